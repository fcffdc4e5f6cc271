"""Weekly growth from a known history: Tehran weeks from Saturday, the week boundary, the rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from service.subscribers import store
from service.subscribers.growth import describe, week_starts, weekly_growth
from service.subscribers.importer import ImportReport, import_batch
from service.subscribers.models import Status
from tests.subscribers.factories import confirm

TEHRAN = ZoneInfo("Asia/Tehran")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # Sunday 8 Azar 1405
# Saturday 7 Azar 1405, 00:00 in Tehran, is Friday 27 November, 20:30 UTC.
BOUNDARY = datetime(2026, 11, 27, 20, 30, tzinfo=UTC)
WEB = store.Consent("web:subscribe-page")


def at(day: int, hour: int = 10, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def history(session: Session) -> None:
    """Who did what when (UTC); the expected weeks are worked out in the test."""
    # a: asks a minute before the boundary (Friday 23:59 in Tehran), confirms a minute after.
    a = store.subscribe(session, "a@example.com", WEB, BOUNDARY - timedelta(minutes=1)).subscriber_id
    confirm(session, a, BOUNDARY + timedelta(minutes=1))
    # b: asks at the boundary itself, and again the next day (one request); never confirms.
    store.subscribe(session, "b@example.com", WEB, BOUNDARY)
    store.subscribe(session, "b@example.com", WEB, at(28))
    # c: asks and confirms in the first week, leaves in the second, asks again in the third.
    c = store.subscribe(session, "c@example.com", WEB, at(15)).subscriber_id
    confirm(session, c, at(15, 11))
    store.unsubscribe(session, c, at(22), "unsubscribe link")
    store.subscribe(session, "c@example.com", WEB, at(28, 9))
    # d: asked in October (before the range), confirmed in the first week.
    d = store.subscribe(session, "d@example.com", WEB, at(1, month=10)).subscriber_id
    confirm(session, d, at(14))
    # e: a reader of old who leaves and comes back through their own link, both this week.
    e = store.subscribe(session, "e@example.com", WEB, at(1, month=10)).subscriber_id
    confirm(session, e, at(2, month=10))
    store.unsubscribe(session, e, at(28, 12), "unsubscribe link")
    store.resubscribe(session, e, at(29, 9), store.Consent("preferences link"))
    # Two addresses imported this week; a confirmed import is no request for confirmation.
    import_batch(session, [(2, "f@example.com"), (3, "g@example.com")], source="import:x.csv",
                 status=Status.CONFIRMED, now=at(28, 15), report=ImportReport())
    session.flush()


def test_weeks_start_on_saturday_at_midnight_in_tehran() -> None:
    starts = week_starts(NOW, TEHRAN, 3)
    week = timedelta(weeks=1)
    assert [s.astimezone(UTC) for s in starts] == [BOUNDARY - 2 * week, BOUNDARY - week, BOUNDARY,
                                                   BOUNDARY + week]
    assert all(s.astimezone(TEHRAN).weekday() == 5 and s.astimezone(TEHRAN).hour == 0 for s in starts)
    # A minute before the boundary it is still the previous week; at the boundary the new one.
    assert week_starts(BOUNDARY - timedelta(minutes=1), TEHRAN, 1)[0] == starts[1]
    assert week_starts(BOUNDARY, TEHRAN, 1)[0] == starts[2]


def test_weekly_counts_and_confirmation_rate_from_a_known_history(session: Session) -> None:
    history(session)
    growth = weekly_growth(session, NOW, TEHRAN, weeks=3)
    assert [w.label for w in growth.weeks] == ["۲۳ آبان ۱۴۰۵", "۳۰ آبان ۱۴۰۵", "۷ آذر ۱۴۰۵"]
    figures = [(w.subscribed, w.imported, w.confirmed, w.unsubscribed, w.requests, w.requests_confirmed)
               for w in growth.weeks]
    assert figures == [
        (1, 0, 2, 0, 1, 1),  # c asks and confirms; d's confirmation of an October request
        (1, 0, 0, 1, 1, 1),  # a asks before the boundary (confirmed next week); c leaves
        (3, 2, 2, 1, 2, 0),  # b, c again, e's own link; f, g imported; a and e; e leaves
    ]
    assert [w.confirmation_rate for w in growth.weeks] == [1.0, 1.0, 0.0]
    assert growth.confirmation_rate == 0.5
    document = growth.as_dict()
    assert document["timezone"] == "Asia/Tehran"
    assert document["weeks"][2]["week_start"] == "2026-11-28T00:00:00+03:30"
    assert document["weeks"][2]["label_fa"] == "۷ آذر ۱۴۰۵"
    assert document["totals"] == {"subscribed": 5, "imported": 2, "confirmed": 4, "unsubscribed": 2,
                                  "requests": 4, "requests_confirmed": 2, "confirmation_rate": 0.5}
    assert describe(growth)[3].split() == ["2026-11-28", "3", "2", "2", "1", "0.0%"]


def test_weeks_with_nothing_are_zero_and_have_no_rate(session: Session) -> None:
    growth = weekly_growth(session, NOW, TEHRAN, weeks=2)
    assert [(w.subscribed, w.confirmed, w.confirmation_rate) for w in growth.weeks] == [(0, 0, None)] * 2
    assert growth.confirmation_rate is None and describe(growth)[1].endswith("-")
