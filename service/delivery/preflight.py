"""Before a send starts: can Chapar send at all? If not, refuse with one line that says why.

Checked the way the workers will send: the DKIM key is read and parsed, then a
connection to the relay is opened with the configured HELO name and TLS policy
(connect, greeting, EHLO, STARTTLS or implicit TLS with certificate checks, AUTH)
and closed with QUIT. A refused send leaves the issue a draft, and the reason is
recorded in the sending health, so `chapar status` shows it too.

Run by `chapar digest send`, by the weekly automatic send, and by anything else
that starts a send.
"""

from __future__ import annotations

from datetime import datetime

from service.db import unit_of_work
from service.delivery import health
from service.delivery.dkim import DkimKeyError, DkimSigner
from service.delivery.transport import SmtpError, connection_for
from service.runtime import Runtime
from service.settings import Settings

TIMEOUT_SECONDS = 15.0

# What failed, in Persian, by the step of opening the connection that failed.
_PERSIAN = {
    "dkim": "کلید DKIM قابل استفاده نیست",
    "connect": "سرور SMTP در دسترس نیست",
    "tls": "اتصال امن (TLS) با سرور SMTP برقرار نشد",
    "greeting": "سرور SMTP اتصال را نپذیرفت",
    "ehlo": "سرور SMTP اتصال را نپذیرفت",
    "starttls": "سرور SMTP اتصال امن (STARTTLS) را نپذیرفت",
    "auth": "سرور SMTP نام کاربری یا گذرواژه را نپذیرفت",
}


class SendRefused(Exception):
    """Sending cannot work now; str() is one line, Persian then English."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        persian = _PERSIAN.get(step, _PERSIAN["connect"])
        super().__init__(f"ارسال آغاز نشد: {persian} | send refused: {reason}")


def check_sending(settings: Settings) -> None:
    """Raise SendRefused unless the DKIM key and the relay are usable right now."""
    try:
        DkimSigner.from_settings(settings)
    except DkimKeyError as exc:
        raise SendRefused("dkim", str(exc)) from exc
    connection = connection_for(settings, timeout=TIMEOUT_SECONDS)
    try:
        connection.open()
    except SmtpError as exc:
        raise SendRefused(exc.step, str(exc)) from exc
    connection.close()


def check_before_send(rt: Runtime, now: datetime) -> None:
    """check_sending, with a refusal recorded for `chapar status`."""
    try:
        check_sending(rt.settings)
    except SendRefused as exc:
        from service.ops import incidents

        with unit_of_work(rt.sessions) as session:
            health.record_failure(session, exc.reason, now)
            incidents.record(session, incidents.SEND_BLOCKED, now, exc.reason, subject=exc.step)
        raise
