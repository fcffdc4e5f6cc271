"""Following a database outage: one warning per outage, and one incident written when it is back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from service.clock import utcnow
from service.db import unit_of_work
from service.ops import incidents
from service.ops.alerts import Watcher
from service.ops.models import Incident
from service.ops.outages import OutageTracker, lasted, skipped_while_unreachable
from service.runtime import Runtime
from tests.conftest import emptied_runtime
from tests.staff.factories import staff_account
from tests.support.outage import database_closed
from tests.web.desk.support import desk_client, sign_in

START = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
REFUSED = OperationalError("SELECT 1", {}, Exception("connection refused\nIs the server running?"))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rt(postgresql_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with emptied_runtime(tmp_path, database_url=postgresql_url, beat_tick_seconds=1.0) as runtime:
        yield runtime


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "service.ops.outages" and "unreachable" in r.getMessage()]


def test_one_warning_per_outage_and_its_length_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tracker = OutageTracker("db.example:5432", clock)
    assert tracker.succeeded() is None  # nothing was wrong
    with caplog.at_level(logging.WARNING):
        assert tracker.failed(REFUSED) is True
        for _ in range(50):  # a tick every few seconds while it lasts
            clock.now += timedelta(seconds=2)
            assert tracker.failed(REFUSED) is False
        assert tracker.down_since == START
        outage = tracker.succeeded()
        assert tracker.succeeded() is None
    assert outage_warnings(caplog) == [
        "database at db.example:5432 unreachable (connection refused); waiting for it to come back"]
    assert outage is not None and outage.seconds == 100 and outage.reason == "connection refused"
    assert tracker.take_ended() == [outage] and tracker.take_ended() == []


def test_a_periodic_job_skips_its_run_and_the_next_one_ends_the_outage() -> None:
    tracker = OutageTracker("db.example:5432")
    ran = []
    with skipped_while_unreachable(tracker):
        raise REFUSED
    assert tracker.down_since is not None
    with skipped_while_unreachable(tracker):
        ran.append(True)
    assert ran == [True] and tracker.down_since is None and len(tracker.take_ended()) == 1
    with pytest.raises(ValueError), skipped_while_unreachable(tracker):
        raise ValueError("not an outage: goes up as before")


def test_durations_read_in_persian() -> None:
    assert lasted(0.2) == "کمتر از یک ثانیه"
    assert lasted(95) == "۱ دقیقه و ۳۵ ثانیه"
    assert lasted(3600 + 120) == "۱ ساعت و ۲ دقیقه"


def test_the_watcher_records_the_outage_once_the_database_is_back(
        rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    watcher = Watcher(rt)
    watcher.tick(utcnow())
    before = utcnow()
    with caplog.at_level(logging.WARNING), database_closed(rt.settings.effective_database_url):
        for watch in (True, False, False, True):
            watcher.tick(utcnow(), watch=watch)  # no exception escapes: the watching goes on
        assert rt.database_outages.down_since is not None
    assert len(outage_warnings(caplog)) == 1
    assert not [r for r in caplog.records if r.exc_info], "a traceback per tick"
    watcher.tick(utcnow(), watch=False)  # a look between passes writes it down
    with rt.sessions() as session:
        rows = list(session.scalars(select(Incident).where(
            Incident.kind == incidents.DATABASE_UNREACHABLE)))
    assert len(rows) == 1
    incident = rows[0]
    assert incident.subject == f"127.0.0.1:{rt.engine.url.port}"
    assert before <= incident.at <= utcnow()
    assert "در دسترس نبود" in incident.detail and "دوباره پاسخ داد" in incident.detail
    assert "not currently accepting connections" in incident.detail  # the driver's reason
    watcher.tick(utcnow())  # written once
    with rt.sessions() as session:
        assert len(list(session.scalars(select(Incident).where(
            Incident.kind == incidents.DATABASE_UNREACHABLE)))) == 1


def test_the_ops_console_lists_the_outage(rt: Runtime) -> None:
    tracker = rt.database_outages
    tracker.failed(REFUSED)
    with unit_of_work(rt.sessions) as session:  # the first connection after it ends the outage
        staff_account(session, "ops@example.com", "ops")
    watcher = Watcher(rt)
    watcher.tick(utcnow())
    with desk_client(rt) as client:
        sign_in(client, "ops@example.com")
        page = client.get("/desk/ops")
    assert page.status_code == 200
    assert "پایگاه داده در دسترس نبود" in page.text
    assert f"127.0.0.1:{rt.engine.url.port}" in page.text


def test_outages_not_written_are_kept_in_order_for_the_next_try() -> None:
    clock = Clock()
    tracker = OutageTracker("db.example:5432", clock)
    for _ in range(2):
        tracker.failed(REFUSED)
        clock.now += timedelta(seconds=30)
        tracker.succeeded()
        clock.now += timedelta(seconds=30)
    first = tracker.take_ended()
    assert [o.started_at for o in first] == [START, START + timedelta(seconds=60)]
    tracker.give_back(first)  # the write failed: the database went away again
    assert tracker.take_ended() == first
