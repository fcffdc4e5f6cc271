"""The subscriber store: subscribe, confirm, unsubscribe, export and erase.

Domain functions take a Session and never commit; the request or task that calls
them owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from service.db import is_sqlite
from service.delivery.models import FAN_OUT_LOCK, Bounce, Delivery
from service.digests.click_counts import reader_clicks
from service.instance_keys import SUPPRESSION, instance_key
from service.subscribers.addresses import address_hash
from service.subscribers.models import (
    ConsentRecord,
    Status,
    Subscriber,
    SubscriberEvent,
    Suppression,
    new_nonce,
)

CONFIRMATION_INTERVAL = timedelta(days=1)


def confirmation_interval(per_day: int) -> timedelta:
    """How long after one confirmation email for an address the next may be owed
    (CONFIRM_EMAILS_PER_ADDRESS_PER_DAY; a day by default)."""
    return CONFIRMATION_INTERVAL / per_day


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


def find_by_email(session: Session, email: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.email == email)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def record(session: Session, subscriber: Subscriber, kind: str, source: str, now: datetime,
           detail: str | None = None) -> None:
    session.add(SubscriberEvent(subscriber=subscriber, at=now, kind=kind, source=source,
                                detail=detail))


def record_consent(session: Session, subscriber: Subscriber, kind: str, consent: Consent,
                   now: datetime, nonce: str | None = None) -> None:
    """Append one line to the subscriber's consent history; earlier lines are never changed."""
    session.add(ConsentRecord(subscriber=subscriber, at=now, kind=kind, source=consent.source,
                              ip=consent.ip, user_agent=_user_agent(consent), nonce=nonce))


def _user_agent(consent: Consent) -> str | None:
    return (consent.user_agent or "")[:300] or None


def subscribe(session: Session, email: str, consent: Consent, now: datetime, *,
              interval: timedelta = CONFIRMATION_INTERVAL) -> SubscribeOutcome:
    """Ask to subscribe `email` (normalised); a confirmation is owed at most once per `interval`.

    The interval is a day unless the settings allow more confirmation emails a day.

    A confirmed address stays confirmed; an unsubscribed or bounced one goes back to
    pending as a new request, which only a link mailed for it can confirm. A
    complained address (the reader marked us as spam) gets nothing from an anonymous
    form, not even a confirmation: only the reader's own signed preferences link
    brings it back. Whoever asks, the request joins the consent history; the
    subscriber's consent fields change only when a request is confirmed.
    """
    subscriber = find_by_email(session, email, lock=True)
    new_request = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(
            email=email, status=Status.PENDING, created_at=now, updated_at=now,
            confirm_nonce=new_nonce(), consent_source=consent.source, consent_at=now,
            consent_ip=consent.ip, consent_user_agent=_user_agent(consent),
        )
        try:
            with session.begin_nested():
                session.add(subscriber)
                session.flush()
        except IntegrityError:
            # Another request created the same address a moment ago: use that row.
            subscriber = find_by_email(session, email, lock=True)
            assert subscriber is not None
            new_request = False
        else:
            record(session, subscriber, "subscribe", consent.source, now)
    if subscriber.status in (Status.UNSUBSCRIBED, Status.BOUNCED):
        record(session, subscriber, "resubscribe_requested", consent.source, now,
               detail=f"was {subscriber.status.value}")
        subscriber.status = Status.PENDING
        subscriber.confirm_nonce = new_nonce()  # links mailed for earlier requests stop here
        subscriber.updated_at = now
        new_request = True
    pending = subscriber.status is Status.PENDING
    record_consent(session, subscriber, "subscribe", consent, now,
                   nonce=subscriber.confirm_nonce if pending else None)
    session.flush()
    if not pending:  # confirmed or complained
        return SubscribeOutcome(subscriber.id, send_confirmation=False)
    # A new request is owed its own email even within the interval, or a reader who
    # unsubscribed and came back the same day would hold only links that no longer
    # work. Only an unsubscribe from the reader's own link, or the mailbox refusing
    # mail, makes the next request new, so a stranger cannot use this to fill an
    # inbox; the per-address form limit applies as before.
    return SubscribeOutcome(subscriber.id, claim_confirmation(
        session, subscriber.id, now, interval=timedelta(0) if new_request else interval))


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


def confirm(session: Session, subscriber_id: int, nonce: str | None, now: datetime,
            consent: Consent) -> Subscriber | None:
    """Confirm the subscription request `nonce` names; confirming twice is harmless.

    Returns None when the subscriber no longer exists (erased). Nothing changes for
    a link mailed for another request: one from before an unsubscribe must not
    confirm a request a stranger made since, and a subscriber who unsubscribed after
    the email was sent stays unsubscribed. `consent` is the click's own client.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    if subscriber.status is Status.PENDING and subscriber.confirm_nonce == nonce:
        requested = first_request(session, subscriber)
        if requested is not None:  # the consent being confirmed is now the one in force
            subscriber.consent_source = requested.source
            subscriber.consent_at = requested.at
            subscriber.consent_ip = requested.ip
            subscriber.consent_user_agent = requested.user_agent
        subscriber.status = Status.CONFIRMED
        subscriber.confirmed_at = now
        subscriber.updated_at = now
        record(session, subscriber, "confirm", consent.source, now)
        record_consent(session, subscriber, "confirm", consent, now, nonce=nonce)
        session.execute(
            delete(Suppression).where(Suppression.email_hash == suppression_hash(session, subscriber.email))
        )
    return subscriber


def first_request(session: Session, subscriber: Subscriber) -> ConsentRecord | None:
    """The request that made the subscriber pending: the first one under the current nonce.

    Later requests while pending (the reader asking again, or anyone else) join it but
    do not replace it. None for a request older than the consent history: the
    subscriber's own consent fields already describe it.
    """
    if subscriber.confirm_nonce is None:
        return None
    return session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == subscriber.id,
               ConsentRecord.nonce == subscriber.confirm_nonce,
               ConsentRecord.kind.in_(("subscribe", "import")))
        .order_by(ConsentRecord.id)
        .limit(1)
    ).one_or_none()


def unsubscribe(session: Session, subscriber_id: int, now: datetime, source: str,
                detail: str | None = None) -> Subscriber | None:
    """Unsubscribe; repeating it is a no-op. Bounced and complained stay as they are."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    if subscriber.status in (Status.PENDING, Status.CONFIRMED):
        subscriber.status = Status.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
        subscriber.updated_at = now
        record(session, subscriber, "unsubscribe", source, now, detail)
    return subscriber


def resubscribe(session: Session, subscriber_id: int, now: datetime,
                consent: Consent) -> Subscriber | None:
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
        subscriber.consent_source = consent.source
        subscriber.consent_at = now
        subscriber.consent_ip = consent.ip
        subscriber.consent_user_agent = _user_agent(consent)
        record(session, subscriber, "resubscribe", consent.source, now)
        record_consent(session, subscriber, "resubscribe", consent, now)
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
        "consent_history": [
            {"at": iso(c.at), "kind": c.kind, "source": c.source, "ip": c.ip,
             "user_agent": c.user_agent}
            for c in subscriber.consents
        ],
        "history": [
            {"at": iso(e.at), "event": e.kind, "source": e.source, "detail": e.detail}
            for e in subscriber.events
        ],
        # Only the per-reader click mode records who clicked (service/digests/click_counts.py).
        "clicks": reader_clicks(session, subscriber.id) if (session := object_session(subscriber))
        else [],
        "timezone_for_display": tz_name,
    }


def erase(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Delete a subscriber, their history and consent records; remember only a keyed hash."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    if not is_sqlite(session):
        # The delete's trigger takes this lock too (migration 0023), to wait for a
        # fan-out that may have read the reader; taken first, before the reader's
        # ledger rows are locked below, so the wait holds up no worker writing them.
        session.execute(select(func.pg_advisory_xact_lock(FAN_OUT_LOCK)))
    digest = suppression_hash(session, subscriber.email)
    if session.get(Suppression, digest) is None:
        session.add(Suppression(email_hash=digest, reason="erased", at=now))
    # The ledger keeps an anonymous line per message sent (its subscriber turns to
    # NULL with the delete); what could name the reader - the bounced address, the
    # server's words about it - goes with them.
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


def suppression_hash(session: Session, email: str) -> str:
    """The suppression list's hash of `email`, under the installation's key that never rotates."""
    return address_hash(instance_key(session, SUPPRESSION), email)


def is_erased(session: Session, email: str) -> bool:
    return session.get(Suppression, suppression_hash(session, email)) is not None
