"""One email to one person, sent the way every digest message is sent.

Whatever Chapar mails outside a digest goes through `send_email`: the confirmation
(service/subscribers/emails.py) now, and staff invitations, test sends and ops
alerts as they come. Each message is built by `compose.build_message` (headers
folded within 78 characters, a Message-ID in the From domain, base64 parts),
signed by the same DkimSigner as the digest, and handed over by the same
SmtpConnection with the configured HELO name and TLS policy. Its return path is a
signed VERP address, so a bounce finds its subscriber as a digest's bounce does.

A failure that is not the recipient's (the relay unreachable, TLS, AUTH, the DKIM
key) is recorded in the sending health for `chapar status`; a message that goes out
clears it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from service.bounces.verp import PREFIX, VerpRef, VerpSigner
from service.db import unit_of_work
from service.delivery import health
from service.delivery.dkim import DkimKeyError, DkimSigner
from service.delivery.transport import Envelope, Result, SmtpError, connection_for
from service.mail.compose import build_message
from service.mail.render import RenderedEmail
from service.runtime import Runtime

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 30.0  # a reader waits for this email; a stuck relay is retried later


class NotSent(OSError):
    """The email was not handed over; trying again later may work (tasks retry OSError)."""


class SendingBroken(NotSent):
    """Nothing can be sent right now, for a reason that is not the recipient's."""


def return_path(rt: Runtime, bounce_ref: VerpRef | None) -> str:
    """A signed VERP address naming `bounce_ref`, or the bare bounce address without one."""
    domain = rt.settings.verp_domain
    if bounce_ref is None:
        return f"{PREFIX.rstrip('+')}@{domain}"
    return VerpSigner(rt.settings.secret_key).address(bounce_ref.id, domain, bounce_ref.kind)


def build_signed(rt: Runtime, email: RenderedEmail, to: str, *, kind: str, now: datetime,
                 headers: Mapping[str, str] | None = None) -> bytes:
    """The complete message bytes, DKIM-signed when DKIM is configured.

    Raises DkimKeyError when DKIM is configured but its key cannot be used.
    """
    s = rt.settings
    extra = {"Feedback-ID": f"{kind}:{s.list_id}", **(headers or {})}
    message = build_message(email, from_name=s.from_name, from_address=s.from_address, to=to,
                            now=now, headers=extra)
    data = message.as_bytes()
    signer = DkimSigner.from_settings(s)
    return signer.sign(data, int(now.timestamp())) if signer is not None else data


def send_email(rt: Runtime, email: RenderedEmail, to: str, *, kind: str, now: datetime,
               bounce_ref: VerpRef | None = None,
               headers: Mapping[str, str] | None = None) -> Result:
    """Send one rendered email to `to` over a fresh connection, closed with QUIT.

    `kind` names the email (confirmation, invitation, test, alert) in its Feedback-ID
    and in logs; `bounce_ref` is what its bounces should be matched to. Returns the
    server's verdict on the message (sent, deferred, failed or uncertain); raises
    SendingBroken when no message could be offered at all.
    """
    try:
        data = build_signed(rt, email, to, kind=kind, now=now, headers=headers)
    except DkimKeyError as exc:
        _broken(rt, str(exc), now)
        raise SendingBroken(str(exc)) from exc
    connection = connection_for(rt.settings, timeout=TIMEOUT_SECONDS)
    try:
        connection.open()
    except SmtpError as exc:
        _broken(rt, str(exc), now)
        raise SendingBroken(str(exc)) from exc
    try:
        [result] = connection.send_many([Envelope(return_path(rt, bounce_ref), to, data)])
    finally:
        connection.close()
    if result.stage == "mail" and result.kind != "sent":  # our sender refused: nobody gets mail
        _broken(rt, f"MAIL FROM refused: {result.code} {result.text}", now)
    elif result.kind == "sent":
        with unit_of_work(rt.sessions) as session:
            health.record_success(session)
    ids = {f"{bounce_ref.kind}_id": bounce_ref.id} if bounce_ref is not None else {}
    log.info("%s email (%s): %s %s", kind, bounce_ref, result.kind, result.code, extra=ids)
    return result


def _broken(rt: Runtime, error: str, now: datetime) -> None:
    log.warning("sending is failing: %s", error)
    with unit_of_work(rt.sessions) as session:
        health.record_failure(session, error, now)
