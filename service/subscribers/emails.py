"""The confirmation email: rendered from templates/email/confirm and sent over SMTP."""

from __future__ import annotations

from datetime import datetime

from service.mail.compose import build_message
from service.mail.smtp import connect
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber


def confirmation_context(rt: Runtime, subscriber: Subscriber) -> dict[str, object]:
    s = rt.settings
    return {
        "list_name": s.list_name,
        "confirm_url": rt.url(f"/confirm/{rt.tokens.confirm(subscriber.id)}"),
        "expires_days": max(1, s.confirm_token_max_age // 86400),
        "sender_name": s.from_name,
        "sender_address": s.from_address,
        "subject": "",
    }


def send_confirmation(rt: Runtime, subscriber_id: int, now: datetime) -> bool:
    """Send the confirmation email if the subscriber is still pending; True if sent."""
    with rt.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status is not Status.PENDING:
            return False
        address = subscriber.email
        context = confirmation_context(rt, subscriber)
    rendered = rt.email_templates.render("confirm", context)
    s = rt.settings
    message = build_message(rendered, from_name=s.from_name, from_address=s.from_address,
                            to=address, now=now)
    client = connect(s.smtp)
    try:
        client.send_message(message)
    finally:
        client.quit()
    return True
