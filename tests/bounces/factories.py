"""Test data for bounces: one issue, subscribers, and a sent delivery row for each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.subscribers.models import Status, Subscriber
from tests.delivery.factories import NOW, make_issue


def add_subscriber(session: Session, email: str) -> Subscriber:
    subscriber = Subscriber(email=email, status=Status.CONFIRMED, created_at=NOW, updated_at=NOW,
                            confirmed_at=NOW, consent_source="test", consent_at=NOW)
    session.add(subscriber)
    session.flush()
    return subscriber


def sent_delivery(session: Session, subscriber: Subscriber, issue_number: int = 1) -> Delivery:
    """A ledger row the SMTP server accepted: the report comes later."""
    issue = session.scalars(select(Issue).where(Issue.number == issue_number)).one_or_none()
    if issue is None:
        issue = make_issue(session, issue_number, IssueStatus.SENT)
    delivery = Delivery(issue_id=issue.id, subscriber_id=subscriber.id,
                        domain=subscriber.email.rpartition("@")[2], status=DeliveryStatus.SENT,
                        attempts=1, created_at=NOW, updated_at=NOW,
                        sent_at=NOW + timedelta(minutes=1), uncertain_count=0)
    session.add(delivery)
    session.flush()
    return delivery
