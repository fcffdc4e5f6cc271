"""The weekly slot: its arithmetic in local time, its setting in the database, skipped weeks.

The environment's CHAPAR_DIGEST_WEEKDAY/HOUR/MINUTE are the defaults; once staff set
the slot on the desk (or `chapar schedule set`) the `weekly_schedule` row holds it.
A week is skipped by writing its slot's `schedule_slots` row ahead of time: the tick
that reaches the slot finds it decided and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.digests.models import ScheduleSlot, WeeklySchedule
from service.persian import jalali_datetime
from service.settings import Settings
from service.staff import audit
from service.staff.permissions import Permission, Who

WEEK = timedelta(days=7)
# The outcomes a slot row may have before its time: built ahead, or skipped by staff.
UNDECIDED = "drafted"
SKIPPED = "skipped"


@dataclass(frozen=True)
class Weekly:
    """One slot a week: weekday (Python's, Monday 0), hour and minute in `tz`."""

    weekday: int
    hour: int
    minute: int
    tz: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> Weekly:
        return cls(settings.digest_weekday, settings.digest_hour, settings.digest_minute, settings.tz)


def as_weekly(when: Weekly | Settings) -> Weekly:
    return when if isinstance(when, Weekly) else Weekly.from_settings(when)


def slot_before(when: Weekly | Settings, now: datetime) -> datetime:
    """The latest slot at or before `now`, in `now`'s zone (UTC in practice)."""
    weekly = as_weekly(when)
    local = now.astimezone(weekly.tz)
    days_back = (local.weekday() - weekly.weekday) % 7
    day = (local - timedelta(days=days_back)).date()
    slot = datetime(day.year, day.month, day.day, weekly.hour, weekly.minute, tzinfo=weekly.tz)
    if slot > local:
        slot -= WEEK
    return slot.astimezone(now.tzinfo)


def next_slot(when: Weekly | Settings, now: datetime) -> datetime:
    """The first slot after `now`."""
    return slot_before(when, now) + WEEK


def coming_slots(when: Weekly | Settings, now: datetime, count: int = 5) -> list[datetime]:
    first = next_slot(when, now)
    return [first + WEEK * n for n in range(count)]


def describe(settings: Settings, slot: datetime) -> str:
    """A slot as people read it: the Jalali calendar in the configured zone."""
    return jalali_datetime(slot, settings.tz)


def current(session: Session, settings: Settings) -> Weekly:
    """The slot in force: the desk's setting, or the environment's defaults."""
    row = session.get(WeeklySchedule, 1)
    if row is None:
        return Weekly.from_settings(settings)
    return Weekly(row.weekday, row.hour, row.minute, settings.tz)


# A change to the schedule as the desk and the CLI apply it: (session, who, now).
Change = Callable[[Session, Who, datetime], None]


class ScheduleError(ValueError):
    """A schedule change that cannot be made; str() is Persian | English."""

    def __init__(self, persian: str, english: str) -> None:
        super().__init__(f"{persian} | {english}")
        self.persian = persian


def set_weekly(session: Session, who: Who, weekday: int, hour: int, minute: int,
               now: datetime) -> None:
    """Store the weekly slot (Python weekday, local hour and minute); audited."""
    who.require(Permission.STAFF_MANAGE)
    actor = who.actor
    if not (0 <= weekday <= 6 and 0 <= hour <= 23 and 0 <= minute <= 59):
        raise ScheduleError("روز یا ساعت نادرست است.",
                            f"no such slot: weekday {weekday}, {hour:02d}:{minute:02d}")
    row = session.get(WeeklySchedule, 1)
    if row is None:
        row = WeeklySchedule(id=1, weekday=weekday, hour=hour, minute=minute, updated_at=now,
                             updated_by=actor.label)
        session.add(row)
    else:
        row.weekday, row.hour, row.minute = weekday, hour, minute
        row.updated_at, row.updated_by = now, actor.label
    session.flush()
    audit.record(session, actor, "schedule.set", "schedule", now,
                 f"weekday={weekday} time={hour:02d}:{minute:02d}")


def slot_rows(session: Session, slots: list[datetime]) -> dict[datetime, ScheduleSlot]:
    rows = session.scalars(select(ScheduleSlot).where(ScheduleSlot.slot_at.in_(slots)))
    return {row.slot_at: row for row in rows}


def skip(session: Session, settings: Settings, who: Who, slot_at: datetime,
         now: datetime) -> None:
    """Send nothing at the coming slot `slot_at`; an issue waiting for it stays as it is."""
    who.require(Permission.ISSUES_PREPARE)
    actor = who.actor
    weekly = current(session, settings)
    if slot_at.tzinfo is None or slot_at <= now or slot_before(weekly, slot_at) != slot_at:
        raise ScheduleError("این زمان یکی از نوبت‌های آیندهٔ ارسال نیست.",
                            f"{slot_at.isoformat()} is not a coming slot")
    row = session.scalar(select(ScheduleSlot).where(ScheduleSlot.slot_at == slot_at))
    if row is None:
        try:
            with session.begin_nested():
                session.add(ScheduleSlot(slot_at=slot_at, outcome=SKIPPED, decided_at=now,
                                         reason=f"skipped by {actor.label}"))
                session.flush()
        except IntegrityError:  # the tick drafted it meanwhile: skip that row instead
            return skip(session, settings, who, slot_at, now)
    elif row.outcome == UNDECIDED:
        row.outcome, row.reason, row.decided_at = SKIPPED, f"skipped by {actor.label}", now
    elif row.outcome != SKIPPED:
        raise ScheduleError("دربارهٔ این نوبت پیش‌تر تصمیم گرفته شده است.",
                            f"the slot {slot_at.isoformat()} is already {row.outcome}")
    session.flush()
    audit.record(session, actor, "schedule.skip", f"slot:{slot_at.isoformat()}", now)


def unskip(session: Session, who: Who, slot_at: datetime, now: datetime) -> None:
    """Undo `skip` for a slot still to come; the tick builds and decides it as usual."""
    who.require(Permission.ISSUES_PREPARE)
    actor = who.actor
    if slot_at.tzinfo is None or slot_at <= now:
        raise ScheduleError("این نوبت گذشته است.", f"the slot {slot_at.isoformat()} has passed")
    removed = session.execute(delete(ScheduleSlot).where(ScheduleSlot.slot_at == slot_at,
                                                         ScheduleSlot.outcome == SKIPPED))
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise ScheduleError("این نوبت رد نشده بود.", f"the slot {slot_at.isoformat()} is not skipped")
    audit.record(session, actor, "schedule.unskip", f"slot:{slot_at.isoformat()}", now)
