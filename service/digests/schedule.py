"""The weekly schedule: one issue per slot, however many beats tick at once.

A slot is an instant (default Friday 08:00 Asia/Tehran). Beat ticks every minute;
the tick that first inserts the slot's row in `schedule_slots` (unique `slot_at`)
builds the issue in the same transaction; every other tick, in this process or
another beat on another machine, hits the unique constraint and does nothing. The
database enforces it, not the hope that only one beat runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.digests.models import Issue, ScheduleSlot
from service.persian import jalali_datetime
from service.runtime import Runtime
from service.settings import Settings

log = logging.getLogger(__name__)
# A slot missed by more than this (beat was down all day) is not sent late.
GRACE = timedelta(hours=6)


class BuildResult(Protocol):
    issue: Issue | None
    reason: str | None


Builder = Callable[..., Any]


def slot_before(settings: Settings, now: datetime) -> datetime:
    """The latest slot at or before `now`, as an aware UTC instant."""
    local = now.astimezone(settings.tz)
    days_back = (local.weekday() - settings.digest_weekday) % 7
    day = (local - timedelta(days=days_back)).date()
    slot = datetime(day.year, day.month, day.day, settings.digest_hour, settings.digest_minute,
                    tzinfo=settings.tz)
    if slot > local:
        slot -= timedelta(days=7)
    return slot.astimezone(now.tzinfo)


def next_slot(settings: Settings, now: datetime) -> datetime:
    """The first slot after `now`."""
    return slot_before(settings, now) + timedelta(days=7)


def describe(settings: Settings, slot: datetime) -> str:
    """A slot as people read it: the Jalali calendar in the configured zone."""
    return jalali_datetime(slot, settings.tz)


@dataclass(frozen=True)
class TickResult:
    slot_at: datetime | None
    issue_id: int | None = None
    rows: int = 0  # ledger rows written in the tick's transaction; the caller rings after commit


def tick(session: Session, settings: Settings, now: datetime, build: Builder | None = None,
         refusal: str | None = None) -> TickResult:
    """Claim the due slot, if nobody has, and build its issue in this transaction.

    `refusal` is why sending cannot work now (the pre-send check): the issue is
    built and left a draft instead of being sent.
    """
    slot_at = slot_before(settings, now)
    if now - slot_at > GRACE:
        return TickResult(None)
    slot = ScheduleSlot(slot_at=slot_at, outcome="building", decided_at=now)
    try:
        with session.begin_nested():
            session.add(slot)
            session.flush()
    except IntegrityError:
        return TickResult(None)  # another tick has this slot
    if build is None:
        from service.digests.build import build_issue

        build = build_issue
    result: BuildResult = build(session, settings, now, slot_at=slot_at)
    if result.issue is None:
        slot.outcome, slot.reason = "skipped", result.reason
        log.info("slot %s skipped: %s", slot_at.isoformat(), result.reason)
        return TickResult(slot_at)
    slot.issue_id = result.issue.id
    auto_send = settings.digest_auto_send and refusal is None
    slot.outcome = "sent" if auto_send else "built"
    log.info("slot %s: issue %s built", slot_at.isoformat(), result.issue.number)
    if settings.digest_auto_send and refusal is not None:
        slot.reason = refusal
        log.warning("slot %s: issue %s not sent: %s", slot_at.isoformat(), result.issue.number,
                    refusal)
    rows = 0
    if auto_send:
        # The fan-out commits with the slot: a tick that dies after its commit can no
        # longer leave a slot marked sent with its issue still a draft.
        from service.delivery import ledger

        rows = ledger.start_send(session, result.issue.id, now,
                                 timedelta(hours=settings.retry_for_hours)) or 0
        if rows == 0:  # nobody to send to: the issue is finished at once
            ledger.finish_if_done(session, result.issue.id, now)
    return TickResult(slot_at, result.issue.id, rows)


def run_tick(rt: Runtime, now: datetime, build: Builder | None = None) -> TickResult:
    """The `chapar.schedule_tick` task: tick (and fan out, if automatic), commit, then ring."""
    from service.ops import marks

    refusal = auto_send_refusal(rt, now)
    with unit_of_work(rt.sessions) as session:
        result = tick(session, rt.settings, now, build, refusal)
        marks.record(session, marks.BEAT_TICK, now)
    if result.rows and result.issue_id is not None:
        from service.delivery.control import ring_fanned_out

        ring_fanned_out(rt, result.issue_id, result.rows)
    return result


def auto_send_refusal(rt: Runtime, now: datetime) -> str | None:
    """Before a slot that will be sent automatically is claimed: why sending cannot work, if so.

    Checked outside the tick's transaction (a network round trip must not hold
    SQLite's write lock), and only while the slot is due and unclaimed.
    """
    settings = rt.settings
    slot_at = slot_before(settings, now)
    if not settings.digest_auto_send or now - slot_at > GRACE:
        return None
    with rt.sessions() as session:
        if session.scalar(select(ScheduleSlot.id).where(ScheduleSlot.slot_at == slot_at)) is not None:
            return None
    from service.delivery.preflight import SendRefused, check_before_send

    try:
        check_before_send(rt, now)
    except SendRefused as exc:
        return str(exc)
    return None
