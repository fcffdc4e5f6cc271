"""Subscribers for tests, made through the store as readers make them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status, Subscriber


def make(rt: Runtime, email: str, status: Status) -> int:
    """A committed subscriber in the given state (pending, confirmed or unsubscribed)."""
    with unit_of_work(rt.sessions) as session:
        sid = store.subscribe(session, email, store.Consent("web:test"), utcnow()).subscriber_id
        if status in (Status.CONFIRMED, Status.UNSUBSCRIBED):
            confirm(session, sid)
        if status is Status.UNSUBSCRIBED:
            store.unsubscribe(session, sid, utcnow(), "test")
    return sid


def confirm(session: Session, subscriber_id: int, now: datetime | None = None) -> Subscriber | None:
    """Confirm a subscriber's pending request as its own confirm link would."""
    subscriber = session.get(Subscriber, subscriber_id)
    assert subscriber is not None
    return store.confirm(session, subscriber_id, subscriber.confirm_nonce, now or utcnow(),
                         store.Consent("confirmation link"))


def confirm_token(rt: Runtime, subscriber_id: int) -> str:
    """The token of the confirm link mailed for the subscriber's current request."""
    with rt.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return rt.tokens.confirm(subscriber_id, subscriber.confirm_nonce)


def find(rt: Runtime, email: str) -> Subscriber | None:
    with rt.sessions() as session:
        return store.find_by_email(session, email)


def subscriber_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0
