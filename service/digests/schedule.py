"""The weekly schedule: one issue per slot, however many beats tick at once.

A slot is an instant (default Friday 08:00 Asia/Tehran; staff may move it, see
weekly.py). Beat ticks every minute, and each tick does three things:

- Ahead of the coming slot (CHAPAR_DIGEST_DRAFT_HOURS_BEFORE) it builds the slot's
  draft for the editors, unless one is already being prepared.
- At the slot it decides: an approved issue is sent; one that is not approved is
  held, never sent, and the editors get an email saying so; with
  CHAPAR_DIGEST_AUTO_SEND=true whatever waits is sent unattended. The pre-send
  checks run before any send, and a blocker holds the issue too.
- An issue scheduled for a chosen time is sent once that time has come.

The tick that first writes a slot's row in `schedule_slots` (unique `slot_at`), or
moves it from "drafted" to deciding, is the only one that acts on it; every other
tick, in this process or another beat on another machine, finds it taken and does
nothing. The database enforces it, not the hope that only one beat runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.digests import review
from service.digests.models import Issue, IssueStatus, ScheduleSlot
from service.digests.review import Checker
from service.digests.weekly import (
    UNDECIDED,
    WEEK,
    current,
    describe,
    next_slot,
    slot_before,
)
from service.runtime import Runtime
from service.settings import Settings
from service.staff.audit import Actor

__all__ = ["GRACE", "TickResult", "describe", "next_slot", "run_tick", "slot_before", "tick"]

log = logging.getLogger(__name__)
# A slot missed by more than this (beat was down all day) is not sent late.
GRACE = timedelta(hours=6)
BEAT = Actor(None, "schedule", "beat")  # how the audit log names the weekly schedule
S = IssueStatus


class BuildResult(Protocol):
    issue: Issue | None
    reason: str | None


Builder = Callable[..., Any]


@dataclass(frozen=True)
class Held:
    """An issue the schedule did not send at its time, and why (Persian | English)."""

    number: int
    due_at: datetime
    reason: str


@dataclass(frozen=True)
class TickResult:
    slot_at: datetime | None  # the slot this tick decided, if any
    issue_id: int | None = None
    rows: int = 0  # ledger rows written in the tick's transaction; the caller rings after commit
    started: tuple[tuple[int, int], ...] = ()  # (issue id, rows) of every send started
    held: tuple[Held, ...] = ()
    drafted: int | None = None  # the number of the issue built ahead of the coming slot


@dataclass
class _Tick:
    session: Session
    settings: Settings
    now: datetime
    build: Builder
    refusal: str | None
    checks: Checker
    started: list[tuple[int, int]] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)

    def send(self, issue: Issue, due_at: datetime) -> int | None:
        """Start the issue's send; None (and the issue held) when it must not go now."""
        if self.refusal is not None:
            self.hold(issue, due_at, self.refusal)
            return None
        try:
            rows = review.start_send(self.session, issue, BEAT, self.now,
                                     timedelta(hours=self.settings.retry_for_hours), self.checks)
        except review.Blocked as exc:
            self.hold(issue, due_at, str(exc))
            return None
        self.started.append((issue.id, rows))
        return rows

    def hold(self, issue: Issue, due_at: datetime, reason: str) -> None:
        log.warning("issue %s held at %s: %s", issue.number, due_at.isoformat(), reason)
        self.held.append(Held(issue.number, due_at, reason))


def waiting_issue(session: Session) -> Issue | None:
    """The newest issue not yet sending, sent or cancelled."""
    return session.scalars(select(Issue).where(Issue.status.in_(review.UNSENT))
                           .order_by(Issue.number.desc()).limit(1)).first()


def _claim(session: Session, slot_at: datetime, now: datetime, outcome: str) -> ScheduleSlot | None:
    slot = ScheduleSlot(slot_at=slot_at, outcome=outcome, decided_at=now)
    try:
        with session.begin_nested():
            session.add(slot)
            session.flush()
    except IntegrityError:
        return None  # another tick has this slot
    return slot


def _draft_ahead(t: _Tick, upcoming: datetime) -> int | None:
    """Build the coming slot's draft once its time has come; returns its number."""
    hours = t.settings.digest_draft_hours_before
    if hours <= 0 or t.now < upcoming - timedelta(hours=hours):
        return None
    if t.session.scalar(select(ScheduleSlot.id).where(ScheduleSlot.slot_at == upcoming)) is not None:
        return None
    slot = _claim(t.session, upcoming, t.now, UNDECIDED)
    if slot is None:
        return None
    issue = waiting_issue(t.session)
    # The editors' work in progress stays; last week's forgotten draft is rebuilt.
    if issue is None or (issue.status is S.DRAFT and issue.created_at < upcoming - WEEK):
        result: BuildResult = t.build(t.session, t.settings, t.now, slot_at=upcoming)
        if result.issue is None:
            slot.reason = result.reason  # built again at the slot, when there may be news
            return None
        issue = result.issue
        log.info("issue %s drafted for the slot %s", issue.number, upcoming.isoformat())
    slot.issue_id = issue.id
    return issue.number


def _claim_due(t: _Tick, slot_at: datetime) -> ScheduleSlot | None:
    slot = t.session.scalar(select(ScheduleSlot).where(ScheduleSlot.slot_at == slot_at))
    if slot is None:
        return _claim(t.session, slot_at, t.now, "deciding")
    if slot.outcome != UNDECIDED:
        return None
    moved = t.session.execute(
        update(ScheduleSlot).where(ScheduleSlot.id == slot.id, ScheduleSlot.outcome == UNDECIDED)
        .values(outcome="deciding", decided_at=t.now).execution_options(synchronize_session=False))
    if not moved.rowcount:  # type: ignore[attr-defined]
        return None
    t.session.refresh(slot)
    return slot


def _decide(t: _Tick, slot: ScheduleSlot) -> int | None:
    """At the slot: send the approved issue, hold any other; returns the issue id."""
    issue = waiting_issue(t.session)
    if issue is None:
        result: BuildResult = t.build(t.session, t.settings, t.now, slot_at=slot.slot_at)
        if result.issue is None:
            slot.outcome, slot.reason = "skipped", result.reason
            log.info("slot %s skipped: %s", slot.slot_at.isoformat(), result.reason)
            return None
        issue = result.issue
    slot.issue_id = issue.id
    if issue.status is S.SCHEDULED:
        slot.outcome = "scheduled"  # it goes at its own time
        return issue.id
    if issue.status is not S.APPROVED and not t.settings.digest_auto_send:
        slot.outcome = "held"
        slot.reason = (f"شمارهٔ {issue.number} «{review.LABELS[issue.status]}» است و تأیید نشده | "
                       f"issue {issue.number} is {issue.status.value}, not approved")
        t.hold(issue, slot.slot_at, slot.reason)
        return issue.id
    rows = t.send(issue, slot.slot_at)
    slot.outcome = "sent" if rows is not None else ("refused" if t.refusal else "blocked")
    slot.reason = t.held[-1].reason if rows is None else None
    return issue.id


def _send_scheduled(t: _Tick) -> None:
    """Send the issues whose chosen time has come; one missed by more than GRACE waits."""
    due = t.session.scalars(select(Issue).where(Issue.status == S.SCHEDULED,
                                                Issue.scheduled_for <= t.now)
                            .order_by(Issue.scheduled_for))
    for issue in list(due):
        when = issue.scheduled_for
        assert when is not None
        if t.now - when > GRACE:
            review.unschedule(t.session, issue, BEAT, t.now, "the send time passed unnoticed")
            t.hold(issue, when, "زمان ارسال گذشت | the send time passed while nothing was running")
        elif t.refusal is None and t.send(issue, when) is None:
            review.unschedule(t.session, issue, BEAT, t.now, "the checks found blockers")


def tick(session: Session, settings: Settings, now: datetime, build: Builder | None = None,
         refusal: str | None = None, *, checks: Checker) -> TickResult:
    """Draft ahead, decide the due slot and send scheduled issues, in this transaction.

    `refusal` is why sending cannot work now (the pre-send check of the relay): an
    issue that would go is held instead, and a scheduled one is tried again next tick.
    """
    from service.digests.build import build_issue, hold_build_lock

    if build is None:
        build = build_issue
    hold_build_lock(session)  # before the slots' row locks: a tick may build
    t = _Tick(session, settings, now, build, refusal, checks)
    weekly = current(session, settings)
    drafted = _draft_ahead(t, next_slot(weekly, now))
    slot_at = slot_before(weekly, now)
    decided_at: datetime | None = None
    issue_id: int | None = None
    if now - slot_at <= GRACE:
        slot = _claim_due(t, slot_at)
        if slot is not None:
            decided_at = slot_at
            issue_id = _decide(t, slot)
    _send_scheduled(t)
    session.flush()
    return TickResult(decided_at, issue_id, sum(rows for _, rows in t.started), tuple(t.started),
                      tuple(t.held), drafted)


def run_tick(rt: Runtime, now: datetime, build: Builder | None = None,
             checks: Checker | None = None) -> TickResult:
    """The `chapar.schedule_tick` task: tick, commit, then ring the workers and tell the editors."""
    from service.ops import marks

    refusal = auto_send_refusal(rt, now)
    with unit_of_work(rt.sessions) as session:
        result = tick(session, rt.settings, now, build, refusal,
                      checks=checks or review.pre_send_checks(rt))
        marks.record(session, marks.BEAT_TICK, now)
    if result.started:
        from service.delivery.control import ring_fanned_out

        for issue_id, rows in result.started:
            if rows:
                ring_fanned_out(rt, issue_id, rows)
    if result.held:
        from service.digests.held import tell_editors

        for held in result.held:
            tell_editors(rt, held.number, held.due_at, held.reason, now)
    return result


def auto_send_refusal(rt: Runtime, now: datetime) -> str | None:
    """Before a tick that may start a send: why sending cannot work, if so.

    Checked outside the tick's transaction (a network round trip must not hold
    SQLite's write lock), and only when this tick could start a send: the due slot is
    still undecided and something would go at it, or a scheduled issue's time has come.
    """
    with rt.sessions() as session:
        if not _may_send(session, rt.settings, now):
            return None
    from service.delivery.preflight import SendRefused, check_before_send

    try:
        check_before_send(rt, now)
    except SendRefused as exc:
        return str(exc)
    return None


def _may_send(session: Session, settings: Settings, now: datetime) -> bool:
    scheduled = session.scalar(select(Issue.id).where(Issue.status == S.SCHEDULED,
                                                      Issue.scheduled_for <= now).limit(1))
    if scheduled is not None:
        return True
    slot_at = slot_before(current(session, settings), now)
    if now - slot_at > GRACE:
        return False
    outcome = session.scalar(select(ScheduleSlot.outcome).where(ScheduleSlot.slot_at == slot_at))
    if outcome not in (None, UNDECIDED):
        return False
    waiting = waiting_issue(session)
    return settings.digest_auto_send or (waiting is not None and waiting.status is S.APPROVED)
