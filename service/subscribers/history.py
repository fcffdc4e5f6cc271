"""One reader's record as staff read it: status, consent, events, and every issue sent to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.delivery.models import Bounce, Delivery, DeliveryStatus
from service.digests.models import Issue
from service.subscribers.models import ConsentRecord, Status, Subscriber, SubscriberEvent


@dataclass(frozen=True)
class IssueDelivery:
    """One issue addressed to the reader and what became of it, bounces reported later included."""

    issue_number: int
    subject: str
    status: DeliveryStatus
    attempts: int
    sent_at: datetime | None
    updated_at: datetime
    last_code: int | None
    last_error: str | None
    bounces: list[str]  # hard | soft | unknown, one per report that came back


@dataclass(frozen=True)
class ReaderHistory:
    subscriber: Subscriber
    consents: list[ConsentRecord]
    events: list[SubscriberEvent]
    deliveries: list[IssueDelivery]
    # When the next confirmation email may be asked for (pending readers only); None: now.
    confirmation_due_at: datetime | None

    @property
    def pending(self) -> bool:
        return self.subscriber.status is Status.PENDING


def reader_history(session: Session, subscriber_id: int, confirmation_interval: timedelta
                   ) -> ReaderHistory | None:
    """Everything the reader page shows, newest first; None when there is no such reader."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    consents = list(session.scalars(select(ConsentRecord).where(
        ConsentRecord.subscriber_id == subscriber_id).order_by(ConsentRecord.id.desc())))
    events = list(session.scalars(select(SubscriberEvent).where(
        SubscriberEvent.subscriber_id == subscriber_id).order_by(SubscriberEvent.id.desc())))
    rows = session.execute(
        select(Delivery, Issue.number, Issue.subject).join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id).order_by(Issue.number.desc())).all()
    bounces: dict[int, list[str]] = {}
    for delivery_id, kind in session.execute(
            select(Bounce.delivery_id, Bounce.kind).where(Bounce.subscriber_id == subscriber_id)
            .order_by(Bounce.id)):
        if delivery_id is not None:
            bounces.setdefault(delivery_id, []).append(kind)
    deliveries = [
        IssueDelivery(number, subject, d.status, d.attempts, d.sent_at, d.updated_at, d.last_code,
                      d.last_error, bounces.get(d.id, []))
        for d, number, subject in rows
    ]
    due = None
    requested = subscriber.confirmation_requested_at
    if subscriber.status is Status.PENDING and requested is not None:
        due = requested + confirmation_interval
    return ReaderHistory(subscriber, consents, events, deliveries, due)
