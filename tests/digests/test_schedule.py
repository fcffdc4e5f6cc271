"""The weekly schedule: slot arithmetic in Tehran, Jalali display, one issue per slot."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery.models import Delivery
from service.digests.models import Issue, IssueStatus, ScheduleSlot
from service.digests.review import Checker
from service.digests.schedule import describe, next_slot, run_tick, slot_before, tick
from service.runtime import Runtime
from service.settings import Settings
from service.subscribers.models import Status
from tests.conftest import make_settings
from tests.delivery.factories import add_subscribers, make_issue

FRIDAY_0800_TEHRAN = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)  # Tehran is UTC+03:30
CLEAN: Checker = lambda session, issue: []  # noqa: E731


@dataclass
class Built:
    issue: Issue | None
    reason: str | None = None


def fake_builder(calls: list[datetime]) -> Any:
    """Stands in for the digest builder: one draft issue per call, numbered in order."""
    def build(session: Session, settings: Settings, now: datetime, *, slot_at: datetime) -> Built:
        calls.append(slot_at)
        number = (session.scalar(select(func.max(Issue.number))) or 0) + 1
        return Built(make_issue(session, number))
    return build


def test_slots_fall_on_friday_0800_in_tehran(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    just_before = FRIDAY_0800_TEHRAN - timedelta(minutes=1)
    assert slot_before(settings, just_before) == FRIDAY_0800_TEHRAN - timedelta(days=7)
    assert slot_before(settings, FRIDAY_0800_TEHRAN) == FRIDAY_0800_TEHRAN
    assert next_slot(settings, just_before + timedelta(days=7)) == FRIDAY_0800_TEHRAN + timedelta(days=7)
    assert describe(settings, FRIDAY_0800_TEHRAN) == "جمعه ۶ آذر ۱۴۰۵، ساعت ۰۸:۰۰"


def test_day_hour_and_zone_are_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, digest_weekday=0, digest_hour=18, digest_minute=30,
                             timezone="Europe/Berlin")
    slot = slot_before(settings, datetime(2026, 11, 27, 12, tzinfo=UTC))
    assert slot == datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # Monday 18:30 CET


def test_a_tick_outside_the_grace_window_builds_nothing(runtime: Runtime) -> None:
    calls: list[datetime] = []
    with unit_of_work(runtime.sessions) as session:
        result = tick(session, runtime.settings, FRIDAY_0800_TEHRAN + timedelta(days=2),
                      fake_builder(calls), checks=CLEAN)
    assert result.slot_at is None and not calls


def test_concurrent_ticks_build_one_issue_per_slot(runtime: Runtime) -> None:
    calls: list[datetime] = []
    build = fake_builder(calls)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def beat(minute: int) -> None:
        try:
            barrier.wait()
            with unit_of_work(runtime.sessions) as session:
                tick(session, runtime.settings, FRIDAY_0800_TEHRAN + timedelta(minutes=minute), build,
                     checks=CLEAN)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=beat, args=(m % 2,)) for m in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    # A restart a minute later ticks again: still the same slot, nothing new.
    with unit_of_work(runtime.sessions) as session:
        tick(session, runtime.settings, FRIDAY_0800_TEHRAN + timedelta(minutes=3), build,
             checks=CLEAN)
    with runtime.sessions() as session:
        slots = session.scalars(select(ScheduleSlot)).all()
        assert [(s.slot_at, s.outcome) for s in slots] == [(FRIDAY_0800_TEHRAN, "held")]
        assert session.scalar(select(func.count()).select_from(Issue)) == 1
    assert calls == [FRIDAY_0800_TEHRAN]


def test_an_empty_week_is_recorded_as_skipped_by_the_real_builder(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        result = tick(session, runtime.settings, FRIDAY_0800_TEHRAN, checks=CLEAN)
    assert result.issue_id is None
    with runtime.sessions() as session:
        slot = session.scalars(select(ScheduleSlot)).one()
        assert slot.outcome == "skipped" and slot.reason


def test_automatic_send_starts_the_send_after_the_build(runtime: Runtime) -> None:
    rt = Runtime(settings=runtime.settings.model_copy(update={"digest_auto_send": True}),
                 engine=runtime.engine, sessions=runtime.sessions, tokens=runtime.tokens)
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 7)
        add_subscribers(session, 2, prefix="p", status=Status.PENDING)
    result = run_tick(rt, FRIDAY_0800_TEHRAN + timedelta(seconds=20), fake_builder([]), CLEAN)
    with rt.sessions() as session:
        issue = session.get(Issue, result.issue_id)
        assert issue is not None and issue.status is IssueStatus.SENDING
        assert session.scalar(select(func.count()).select_from(Delivery)) == 7
        assert session.scalars(select(ScheduleSlot.outcome)).one() == "sent"


def test_an_automatic_tick_commits_the_ledger_with_its_slot(runtime: Runtime) -> None:
    """A tick that dies right after its commit leaves a send the sweeper can ring for."""
    settings = runtime.settings.model_copy(update={"digest_auto_send": True})
    with unit_of_work(runtime.sessions) as session:
        add_subscribers(session, 3)
    with unit_of_work(runtime.sessions) as session:
        result = tick(session, settings, FRIDAY_0800_TEHRAN + timedelta(seconds=5), fake_builder([]),
                      checks=CLEAN)
    assert result.rows == 3  # nothing rung: as if the process died here
    with runtime.sessions() as session:
        issue = session.get(Issue, result.issue_id)
        assert issue is not None and issue.status is IssueStatus.SENDING
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3
        assert session.scalars(select(ScheduleSlot.outcome)).one() == "sent"


def test_an_automatic_send_is_held_when_the_checks_find_a_blocker(runtime: Runtime) -> None:
    """The checks run on the built issue before an unattended send; a blocker keeps it a draft."""
    rt = Runtime(settings=runtime.settings.model_copy(update={"digest_auto_send": True}),
                 engine=runtime.engine, sessions=runtime.sessions, tokens=runtime.tokens)
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 4)

    def without_subject(session: Session, settings: Settings, now: datetime, *,
                        slot_at: datetime) -> Built:
        issue = make_issue(session, 1)
        issue.subject = ""
        return Built(issue)

    result = run_tick(rt, FRIDAY_0800_TEHRAN + timedelta(seconds=20), without_subject)
    with rt.sessions() as session:
        issue = session.get(Issue, result.issue_id)
        assert issue is not None and issue.status is IssueStatus.DRAFT
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        slot = session.scalars(select(ScheduleSlot)).one()
        assert slot.outcome == "blocked"
        assert slot.reason and "موضوع نامه خالی است" in slot.reason and "the subject is empty" in slot.reason
