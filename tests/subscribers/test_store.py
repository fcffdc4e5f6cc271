from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from service.subscribers import store
from service.subscribers.models import Status, Subscriber

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
SECRET = "test-secret-key-that-is-long-enough-0123456789"
CONSENT = store.Consent(source="web:test", ip="203.0.113.9", user_agent="pytest")


def test_new_address_is_pending_and_owes_one_confirmation(session: Session) -> None:
    outcome = store.subscribe(session, "reader@example.com", CONSENT, NOW)
    again = store.subscribe(session, "reader@example.com", CONSENT, NOW + timedelta(hours=3))
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.PENDING
    assert outcome.send_confirmation is True
    assert again.send_confirmation is False  # at most one email per address per day
    assert subscriber.consent_ip == "203.0.113.9" and subscriber.consent_source == "web:test"


def test_a_day_later_another_confirmation_is_allowed(session: Session) -> None:
    first = store.subscribe(session, "late@example.com", CONSENT, NOW)
    later = store.subscribe(session, "late@example.com", CONSENT, NOW + timedelta(days=1))
    assert first.send_confirmation and later.send_confirmation


def test_confirmed_address_gets_no_new_email(session: Session) -> None:
    outcome = store.subscribe(session, "c@example.com", CONSENT, NOW)
    store.confirm(session, outcome.subscriber_id, NOW, SECRET)
    again = store.subscribe(session, "c@example.com", CONSENT, NOW + timedelta(days=3))
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
    assert again.send_confirmation is False


def test_old_confirm_link_does_not_undo_unsubscribe(session: Session) -> None:
    outcome = store.subscribe(session, "u@example.com", CONSENT, NOW)
    store.confirm(session, outcome.subscriber_id, NOW, SECRET)
    store.unsubscribe(session, outcome.subscriber_id, NOW, "test")
    store.confirm(session, outcome.subscriber_id, NOW, SECRET)
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED


def test_resubscribing_a_suppressed_address_needs_confirmation(session: Session) -> None:
    outcome = store.subscribe(session, "back@example.com", CONSENT, NOW)
    store.confirm(session, outcome.subscriber_id, NOW, SECRET)
    store.unsubscribe(session, outcome.subscriber_id, NOW, "test")
    again = store.subscribe(session, "back@example.com", CONSENT, NOW + timedelta(days=2))
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.PENDING
    assert again.send_confirmation is True
    kinds = [e.kind for e in subscriber.events]
    assert kinds == ["subscribe", "confirm", "unsubscribe", "resubscribe_requested"]


def test_erase_removes_the_row_and_keeps_only_a_hash(session: Session) -> None:
    outcome = store.subscribe(session, "gone@example.com", CONSENT, NOW)
    assert store.erase(session, outcome.subscriber_id, NOW, SECRET)
    assert session.get(Subscriber, outcome.subscriber_id) is None
    assert store.is_erased(session, "gone@example.com", SECRET)
    assert not store.is_erased(session, "other@example.com", SECRET)
