"""Open an SMTP connection as CHAPAR_SMTP_URL says (plain, STARTTLS or implicit TLS)."""

from __future__ import annotations

import smtplib
import ssl

from service.settings import SmtpTarget


def connect(target: SmtpTarget, timeout: float = 30.0) -> smtplib.SMTP:
    """A logged-in connection; the caller quits it."""
    client: smtplib.SMTP
    if target.tls == "implicit":
        client = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout,
                                  context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=timeout)
    try:
        client.ehlo()
        if target.tls == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if target.username:
            client.login(target.username, target.password or "")
    except BaseException:
        client.close()
        raise
    return client
