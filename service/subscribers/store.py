"""The subscriber store: subscribe, confirm, unsubscribe, export and erase.

Domain functions take a Session and never commit; the request or task that calls
them owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.delivery.models import Bounce, Delivery
from service.subscribers.addresses import address_hash
from service.subscribers.models import (
    SUPPRESSED,
    Status,
    Subscriber,
    SubscriberEvent,
    Suppression,
)

CONFIRMATION_INTERVAL = timedelta(days=1)


@dataclass(frozen=True)
class Consent:
    """Where a subscription came from: the form or import, and the client."""

    source: str
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class SubscribeOutcome:
    subscriber_id: int
    send_confirmation: bool  # the caller enqueues the email after its commit


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email == email)).one_or_none()


def record(session: Session, subscriber: Subscriber, kind: str, source: str, now: datetime,
           detail: str | None = None) -> None:
    session.add(SubscriberEvent(subscriber=subscriber, at=now, kind=kind, source=source,
                                detail=detail))


def subscribe(session: Session, email: str, consent: Consent, now: datetime, *,
              interval: timedelta = CONFIRMATION_INTERVAL) -> SubscribeOutcome:
    """Ask to subscribe `email` (normalised); a confirmation is owed at most once per `interval`.

    The interval is a day unless the settings allow more confirmation emails a day.

    A confirmed address stays confirmed; an unsubscribed or bounced one goes back to
    pending and is only mailed again once it confirms. A complained address (the
    reader marked us as spam) gets nothing from an anonymous form, not even a
    confirmation: only the reader's own signed preferences link brings it back.
    """
    subscriber = find_by_email(session, email)
    if subscriber is None:
        subscriber = Subscriber(
            email=email, status=Status.PENDING, created_at=now, updated_at=now,
            consent_source=consent.source, consent_at=now, consent_ip=consent.ip,
            consent_user_agent=(consent.user_agent or "")[:300] or None,
        )
        try:
            with session.begin_nested():
                session.add(subscriber)
                session.flush()
        except IntegrityError:
            # Another request created the same address a moment ago: use that row.
            subscriber = find_by_email(session, email)
            assert subscriber is not None
        else:
            record(session, subscriber, "subscribe", consent.source, now)
    if subscriber.status in (Status.CONFIRMED, Status.COMPLAINED):
        return SubscribeOutcome(subscriber.id, send_confirmation=False)
    if subscriber.status in SUPPRESSED or subscriber.status is Status.PENDING:
        if subscriber.status is not Status.PENDING:
            record(session, subscriber, "resubscribe_requested", consent.source, now,
                   detail=f"was {subscriber.status.value}")
            subscriber.status = Status.PENDING
        subscriber.consent_source = consent.source
        subscriber.consent_at = now
        subscriber.consent_ip = consent.ip
        subscriber.consent_user_agent = (consent.user_agent or "")[:300] or None
        subscriber.updated_at = now
        session.flush()
    return SubscribeOutcome(subscriber.id,
                            claim_confirmation(session, subscriber.id, now, interval=interval))


def claim_confirmation(session: Session, subscriber_id: int, now: datetime, *,
                       interval: timedelta = CONFIRMATION_INTERVAL) -> bool:
    """Take the right to send a confirmation email; at most one per address per interval.

    One conditional UPDATE, so concurrent requests for the same address (any number
    of web processes) let exactly one of them through.
    """
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status == Status.PENDING,
            or_(Subscriber.confirmation_requested_at.is_(None),
                Subscriber.confirmation_requested_at <= now - interval),
        )
        .values(confirmation_requested_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = bool(result.rowcount)  # type: ignore[attr-defined]
    if claimed:
        session.expire_all()
    return claimed


def confirm(session: Session, subscriber_id: int, now: datetime, secret_key: str) -> Subscriber | None:
    """Confirm a pending subscription; confirming twice is harmless.

    Returns None when the subscriber no longer exists (erased). A subscriber who
    unsubscribed after the email was sent stays unsubscribed: an old link must not
    undo a newer decision.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    if subscriber.status is Status.PENDING:
        subscriber.status = Status.CONFIRMED
        subscriber.confirmed_at = now
        subscriber.updated_at = now
        record(session, subscriber, "confirm", "confirmation link", now)
        session.execute(
            delete(Suppression).where(
                Suppression.email_hash == address_hash(secret_key, subscriber.email)
            )
        )
    return subscriber


def unsubscribe(session: Session, subscriber_id: int, now: datetime, source: str) -> Subscriber | None:
    """Unsubscribe; repeating it is a no-op. Bounced and complained stay as they are."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    if subscriber.status in (Status.PENDING, Status.CONFIRMED):
        subscriber.status = Status.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
        subscriber.updated_at = now
        record(session, subscriber, "unsubscribe", source, now)
    return subscriber


def resubscribe(session: Session, subscriber_id: int, now: datetime, source: str) -> Subscriber | None:
    """Undo an unsubscribe or a spam complaint from the subscriber's own signed link.

    The link proves the reader controls the mailbox (it was mailed there), so it
    counts as confirmation. A bounced address needs a fresh subscribe and confirmation,
    which proves the mailbox works again.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    if subscriber.status in (Status.UNSUBSCRIBED, Status.COMPLAINED):
        subscriber.status = Status.CONFIRMED
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        subscriber.updated_at = now
        subscriber.consent_source = source
        subscriber.consent_at = now
        record(session, subscriber, "resubscribe", source, now)
    return subscriber


def mark_bounced(session: Session, subscriber_id: int, now: datetime, detail: str) -> None:
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is not None and subscriber.status is not Status.BOUNCED:
        subscriber.status = Status.BOUNCED
        subscriber.bounced_at = now
        subscriber.updated_at = now
        record(session, subscriber, "bounce", "bounce", now, detail=detail[:1000])


def export(subscriber: Subscriber, tz_name: str) -> dict[str, Any]:
    """Everything Chapar holds about one subscriber, as JSON-safe data."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "email": subscriber.email,
        "status": subscriber.status.value,
        "created_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "bounced_at": iso(subscriber.bounced_at),
        "complained_at": iso(subscriber.complained_at),
        "consent": {
            "source": subscriber.consent_source,
            "at": iso(subscriber.consent_at),
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
            "confirmed_at": iso(subscriber.confirmed_at),
        },
        "history": [
            {"at": iso(e.at), "event": e.kind, "source": e.source, "detail": e.detail}
            for e in subscriber.events
        ],
        "timezone_for_display": tz_name,
    }


def erase(session: Session, subscriber_id: int, now: datetime, secret_key: str) -> bool:
    """Delete a subscriber and their history; remember only a keyed hash as suppression."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    digest = address_hash(secret_key, subscriber.email)
    if session.get(Suppression, digest) is None:
        session.add(Suppression(email_hash=digest, reason="erased", at=now))
    # The ledger keeps an anonymous line per message sent (the foreign keys turn to
    # NULL); what could name the reader - the bounced address, the server's words
    # about it - goes with them.
    session.execute(
        update(Bounce).where(Bounce.subscriber_id == subscriber_id)
        .values(recipient=None, detail=None).execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery).where(Delivery.subscriber_id == subscriber_id)
        .values(last_error=None).execution_options(synchronize_session=False)
    )
    session.delete(subscriber)
    session.flush()
    return True


def is_erased(session: Session, email: str, secret_key: str) -> bool:
    return session.get(Suppression, address_hash(secret_key, email)) is not None
