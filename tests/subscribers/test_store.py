from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.delivery.models import Bounce
from service.subscribers import store
from service.subscribers.addresses import normalize_address
from service.subscribers.models import Status, Subscriber
from tests.subscribers.factories import confirm

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
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
    confirm(session, outcome.subscriber_id, NOW)
    again = store.subscribe(session, "c@example.com", CONSENT, NOW + timedelta(days=3))
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
    assert again.send_confirmation is False


def test_old_confirm_link_does_not_undo_unsubscribe(session: Session) -> None:
    outcome = store.subscribe(session, "u@example.com", CONSENT, NOW)
    confirm(session, outcome.subscriber_id, NOW)
    store.unsubscribe(session, outcome.subscriber_id, NOW, "test")
    confirm(session, outcome.subscriber_id, NOW)
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED


def test_resubscribing_a_suppressed_address_needs_confirmation(session: Session) -> None:
    outcome = store.subscribe(session, "back@example.com", CONSENT, NOW)
    confirm(session, outcome.subscriber_id, NOW)
    store.unsubscribe(session, outcome.subscriber_id, NOW, "test")
    again = store.subscribe(session, "back@example.com", CONSENT, NOW + timedelta(days=2))
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None and subscriber.status is Status.PENDING
    assert again.send_confirmation is True
    kinds = [e.kind for e in subscriber.events]
    assert kinds == ["subscribe", "confirm", "unsubscribe", "resubscribe_requested"]


def test_erase_removes_the_row_and_keeps_only_a_hash(session: Session) -> None:
    outcome = store.subscribe(session, "gone@example.com", CONSENT, NOW)
    assert store.erase(session, outcome.subscriber_id, NOW)
    assert session.get(Subscriber, outcome.subscriber_id) is None
    assert store.is_erased(session, "gone@example.com")
    assert not store.is_erased(session, "other@example.com")


def test_one_row_per_address_whatever_its_case(session: Session) -> None:
    first = store.subscribe(session, normalize_address("Reader@Example.COM"), CONSENT, NOW)
    second = store.subscribe(session, normalize_address("reader@example.com"), CONSENT, NOW)
    assert first.subscriber_id == second.subscriber_id


def test_every_change_has_its_timestamp_and_event(session: Session) -> None:
    sid = store.subscribe(session, "t@example.com", CONSENT, NOW).subscriber_id
    confirm(session, sid, NOW + timedelta(minutes=5))
    store.unsubscribe(session, sid, NOW + timedelta(days=3), "unsubscribe link")
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None
    assert subscriber.created_at == NOW and subscriber.consent_at == NOW
    assert subscriber.confirmed_at == NOW + timedelta(minutes=5)
    assert subscriber.unsubscribed_at == NOW + timedelta(days=3)
    assert subscriber.updated_at == NOW + timedelta(days=3)
    assert [(e.kind, e.source) for e in subscriber.events] == [
        ("subscribe", "web:test"), ("confirm", "confirmation link"),
        ("unsubscribe", "unsubscribe link"),
    ]
    assert all(e.at.tzinfo is not None for e in subscriber.events)  # UTC on SQLite too


def test_unsubscribing_twice_is_a_no_op(session: Session) -> None:
    sid = store.subscribe(session, "twice@example.com", CONSENT, NOW).subscriber_id
    store.unsubscribe(session, sid, NOW, "a")
    store.unsubscribe(session, sid, NOW + timedelta(hours=1), "b")
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None and subscriber.unsubscribed_at == NOW
    assert [e.kind for e in subscriber.events] == ["subscribe", "unsubscribe"]
    assert store.unsubscribe(session, 424242, NOW, "a") is None


def test_resubscribe_from_a_signed_link_only_undoes_an_unsubscribe(session: Session) -> None:
    sid = store.subscribe(session, "r@example.com", CONSENT, NOW).subscriber_id
    store.resubscribe(session, sid, NOW, store.Consent("preferences page"))
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None and subscriber.status is Status.PENDING
    confirm(session, sid, NOW)
    store.unsubscribe(session, sid, NOW, "test")
    store.resubscribe(session, sid, NOW + timedelta(days=1), store.Consent("preferences page"))
    assert subscriber.status is Status.CONFIRMED and subscriber.unsubscribed_at is None
    assert subscriber.consent_source == "preferences page"


def test_a_bounced_address_is_not_resubscribed_by_its_link(session: Session) -> None:
    sid = store.subscribe(session, "b@example.com", CONSENT, NOW).subscriber_id
    confirm(session, sid, NOW)
    store.mark_bounced(session, sid, NOW, "550 5.1.1 no such user")
    store.unsubscribe(session, sid, NOW, "test")
    store.resubscribe(session, sid, NOW, store.Consent("preferences page"))
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None and subscriber.status is Status.BOUNCED
    assert subscriber.suppressed and subscriber.bounced_at == NOW


@pytest.mark.parametrize("suppress", ["unsubscribe", "bounce"])
def test_a_stranger_resubscribing_a_suppressed_address_cannot_confirm_it(
    session: Session, suppress: str
) -> None:
    sid = store.subscribe(session, "s@example.com", CONSENT, NOW).subscriber_id
    confirm(session, sid, NOW)
    if suppress == "bounce":
        store.mark_bounced(session, sid, NOW, "550")
    else:
        store.unsubscribe(session, sid, NOW, "test")
    stranger = store.Consent("web:subscribe-page", ip="198.51.100.7")
    outcome = store.subscribe(session, "s@example.com", stranger, NOW + timedelta(days=2))
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None
    # Pending is not confirmed: no newsletter goes out until the mailbox owner confirms.
    assert subscriber.status is Status.PENDING and subscriber.status is not Status.CONFIRMED
    assert outcome.send_confirmation  # only the confirmation, at most once a day


def test_an_erased_address_comes_back_only_by_confirming(session: Session) -> None:
    sid = store.subscribe(session, "e@example.com", CONSENT, NOW).subscriber_id
    store.erase(session, sid, NOW)
    assert store.erase(session, sid, NOW) is False
    again = store.subscribe(session, "e@example.com", CONSENT, NOW + timedelta(days=1))
    assert store.is_erased(session, "e@example.com")  # still, until confirmed
    confirm(session, again.subscriber_id, NOW + timedelta(days=1))
    assert not store.is_erased(session, "e@example.com")
    assert again.subscriber_id != sid  # ids in old links are never reused


def test_export_holds_everything_about_one_subscriber(session: Session) -> None:
    sid = store.subscribe(session, "x@example.com", CONSENT, NOW).subscriber_id
    confirm(session, sid, NOW + timedelta(minutes=3))
    subscriber = session.get(Subscriber, sid)
    assert subscriber is not None
    data = store.export(subscriber, "Asia/Tehran")
    assert data["email"] == "x@example.com" and data["status"] == "confirmed"
    assert data["consent"] == {
        "source": "web:test", "at": NOW.isoformat(), "ip": "203.0.113.9",
        "user_agent": "pytest", "confirmed_at": (NOW + timedelta(minutes=3)).isoformat(),
    }
    assert [h["event"] for h in data["history"]] == ["subscribe", "confirm"]
    json.dumps(data)  # JSON-safe as it is


def test_erasing_forgets_the_address_in_bounce_reports_too(session: Session) -> None:
    sid = store.subscribe(session, "bounced@example.com", CONSENT, NOW).subscriber_id
    other = store.subscribe(session, "kept@example.com", CONSENT, NOW).subscriber_id
    for owner, address in ((sid, "bounced@example.com"), (other, "kept@example.com")):
        session.add(Bounce(received_at=NOW, subscriber_id=owner, kind="hard", recipient=address,
                           detail=f"550 5.1.1 <{address}>: no such user"))
    session.flush()
    store.erase(session, sid, NOW)
    session.expire_all()
    rows = session.scalars(select(Bounce).order_by(Bounce.id)).all()
    assert [(b.subscriber_id, b.recipient, b.detail) for b in rows] == [
        (None, None, None),  # an anonymous record that something bounced, nothing more
        (other, "kept@example.com", "550 5.1.1 <kept@example.com>: no such user"),
    ]


def test_a_shorter_interval_allows_more_confirmations_a_day(session: Session) -> None:
    twice_a_day = timedelta(hours=12)
    first = store.subscribe(session, "often@example.com", CONSENT, NOW, interval=twice_a_day)
    soon = store.subscribe(session, "often@example.com", CONSENT, NOW + timedelta(hours=11),
                           interval=twice_a_day)
    later = store.subscribe(session, "often@example.com", CONSENT, NOW + timedelta(hours=12),
                            interval=twice_a_day)
    assert (first.send_confirmation, soon.send_confirmation, later.send_confirmation) == (
        True, False, True)


def test_a_stranger_cannot_mail_an_address_that_complained(session: Session) -> None:
    outcome = store.subscribe(session, "spam-button@example.com", CONSENT, NOW)
    confirm(session, outcome.subscriber_id, NOW)
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert subscriber is not None
    subscriber.status = Status.COMPLAINED
    session.flush()
    again = store.subscribe(session, "spam-button@example.com", CONSENT, NOW + timedelta(days=2))
    assert again.send_confirmation is False
    assert subscriber.status is Status.COMPLAINED
    # The reader's own signed link is what brings the address back.
    store.resubscribe(session, outcome.subscriber_id, NOW + timedelta(days=3),
                      store.Consent("preferences page"))
    assert subscriber.status is Status.CONFIRMED
