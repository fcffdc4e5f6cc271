"""Build a MIME message: text/plain first, then text/html, both UTF-8 and base64.

Python picks quoted-printable for Persian HTML by looking at its ASCII head, which
nearly doubles its size (Gmail clips past ~100 KB), so the encoding is explicit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from service.mail.headers import SMTP_POLICY
from service.mail.render import RenderedEmail
from service.persian import single_line


def sender(display_name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=single_line(display_name), username=local, domain=domain)


def build_message(
    rendered: RenderedEmail,
    *,
    from_name: str,
    from_address: str,
    to: str,
    now: datetime,
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = single_line(rendered.subject)
    message["From"] = sender(from_name, from_address)
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id or make_msgid(domain=from_address.rpartition("@")[2])
    for name, value in (headers or {}).items():
        message[name] = single_line(value)
    message.set_content(rendered.text, charset="utf-8", cte="base64")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
    return message
