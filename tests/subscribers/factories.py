"""Subscribers for tests, made through the store as readers make them."""

from __future__ import annotations

from sqlalchemy import func, select

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
            store.confirm(session, sid, utcnow(), rt.settings.secret_key)
        if status is Status.UNSUBSCRIBED:
            store.unsubscribe(session, sid, utcnow(), "test")
    return sid


def find(rt: Runtime, email: str) -> Subscriber | None:
    with rt.sessions() as session:
        return store.find_by_email(session, email)


def subscriber_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0
