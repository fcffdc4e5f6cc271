"""`chapar digest review|approve|send-back|schedule|send-now|list N` and `chapar schedule ...`.

The same functions as the desk (service/digests/review.py and weekly.py), so the
rules are the same. The command line acts as an admin unless `--as EMAIL` names a
staff account whose role is then what counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.commands import opened_runtime
from service.db import unit_of_work
from service.digests import review, weekly
from service.digests.commands import digest
from service.digests.models import Issue
from service.persian import jalali_datetime
from service.runtime import Runtime
from service.staff import accounts
from service.staff.audit import Actor
from service.staff.permissions import COMMAND_LINE, NotPermitted, Who

T = TypeVar("T")
as_option = click.option("--as", "as_email", default=None, metavar="EMAIL",
                         help="Act as this staff account (its role decides what is allowed).")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def who_for(session: Session, email: str | None) -> Who:
    if email is None:
        return COMMAND_LINE
    account = accounts.find(session, email)
    if account is None or not account.active:
        raise click.ClickException(f"no active staff account {email}")
    return Who(Actor(account.id, account.email, "cli"), account.role)


@contextmanager
def refusals() -> Iterator[None]:
    """A refused move ends the command with its one-line reason, Persian | English."""
    try:
        yield
    except (review.ReviewError, weekly.ScheduleError, NotPermitted) as exc:
        raise click.ClickException(str(exc)) from exc


def on_issue(number: int, as_email: str | None,
             move: Callable[[Runtime, Session, Issue, Who], T]) -> T:
    with opened_runtime() as rt, refusals(), unit_of_work(rt.sessions) as session:
        issue = review.find(session, number)
        return move(rt, session, issue, who_for(session, as_email))


@digest.command("list")
def list_issues() -> None:
    """The issues, newest first, with their state."""
    with opened_runtime() as rt, rt.sessions() as session:
        for issue in session.scalars(select(Issue).order_by(Issue.number.desc()).limit(50)):
            when = issue.scheduled_for or issue.send_started_at or issue.created_at
            click.echo(f"{issue.number:>5}  {issue.status.value:<10}  {when.isoformat()}  {issue.subject}")


@digest.command("review")
@click.argument("number", type=int)
@click.option("--override", is_flag=True, help="An admin goes past the checks' blockers (audited).")
@as_option
def request_review(number: int, override: bool, as_email: str | None) -> None:
    """Ask for review of draft NUMBER (the pre-send checks run first)."""
    on_issue(number, as_email, lambda rt, s, issue, who: review.request_review(
        s, issue, who, utcnow(), review.pre_send_checks(rt), override=override))
    click.echo(f"issue {number} is in review")


@digest.command("approve")
@click.argument("number", type=int)
@as_option
def approve(number: int, as_email: str | None) -> None:
    """Approve issue NUMBER: it goes at the next weekly slot (or schedule it, or send it now)."""
    on_issue(number, as_email, lambda rt, s, issue, who: review.approve(s, issue, who, utcnow()))
    click.echo(f"issue {number} is approved")


@digest.command("send-back")
@click.argument("number", type=int)
@click.option("--comment", required=True, help="What the editor should change.")
@as_option
def send_back(number: int, comment: str, as_email: str | None) -> None:
    """Return issue NUMBER to its editor as a draft, with a comment."""
    on_issue(number, as_email,
             lambda rt, s, issue, who: review.send_back(s, issue, who, utcnow(), comment))
    click.echo(f"issue {number} is a draft again")


@digest.command("schedule")
@click.argument("number", type=int)
@click.option("--at", "at", type=click.DateTime(["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]), default=None,
              help="Local time (CHAPAR_TIMEZONE), e.g. 2026-12-04T08:00; default: the next slot.")
@as_option
def schedule_issue(number: int, at: datetime | None, as_email: str | None) -> None:
    """Send approved issue NUMBER at a chosen time, or at the next weekly slot."""
    def move(rt: Runtime, session: Session, issue: Issue, who: Who) -> datetime:
        local = at.replace(tzinfo=rt.settings.tz) if at is not None else None
        when = review.schedule(session, rt.settings, issue, who, utcnow(), local)
        return when.astimezone(rt.settings.tz)

    when = on_issue(number, as_email, move)
    click.echo(f"issue {number} is scheduled for {when.isoformat()}")


@digest.command("send-now")
@click.argument("number", type=int)
@click.option("--override", is_flag=True, help="An admin goes past the checks' blockers (audited).")
@as_option
def send_now(number: int, override: bool, as_email: str | None) -> None:
    """Send approved issue NUMBER now (the checks and the sending check run first)."""
    with opened_runtime() as rt, refusals():
        with rt.sessions() as session:
            who = who_for(session, as_email)
        rows = review.send_now_and_ring(rt, number, who, utcnow(), override=override)
    click.echo(f"issue {number}: {rows} deliveries queued; the workers are sending")


@click.group("schedule")
def schedule_group() -> None:
    """The weekly slot: show it, move it, skip a week."""


@schedule_group.command("show")
def show() -> None:
    """The weekly slot and the next five, as Jalali dates in local time."""
    with opened_runtime() as rt, rt.sessions() as session:
        now = utcnow()
        slot = weekly.current(session, rt.settings)
        click.echo(f"weekly: {WEEKDAYS[slot.weekday]} {slot.hour:02d}:{slot.minute:02d} "
                   f"({rt.settings.timezone})")
        coming = weekly.coming_slots(slot, now)
        rows = weekly.slot_rows(session, coming)
        for at in coming:
            row = rows.get(at)
            mark = f"  [{row.outcome}]" if row is not None else ""
            click.echo(f"  {at.astimezone(slot.tz).isoformat()}  {jalali_datetime(at, slot.tz)}{mark}")


@schedule_group.command("set")
@click.argument("day", type=click.Choice(WEEKDAYS))
@click.argument("time", metavar="HH:MM")
@as_option
def set_slot(day: str, time: str, as_email: str | None) -> None:
    """Move the weekly slot, e.g. `chapar schedule set fri 08:00` (local time)."""
    hour, _, minute = time.partition(":")
    if not (hour.isdigit() and minute.isdigit()):
        raise click.BadParameter("use HH:MM", param_hint="TIME")
    with opened_runtime() as rt, refusals(), unit_of_work(rt.sessions) as session:
        weekly.set_weekly(session, who_for(session, as_email), WEEKDAYS.index(day), int(hour),
                          int(minute), utcnow())
    click.echo(f"the weekly slot is now {day} {int(hour):02d}:{int(minute):02d}")


@schedule_group.command("skip")
@click.argument("date", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--undo", is_flag=True, help="Send at that slot after all.")
@as_option
def skip(date: datetime, undo: bool, as_email: str | None) -> None:
    """Send nothing at the slot on DATE (local date, YYYY-MM-DD)."""
    with opened_runtime() as rt, refusals(), unit_of_work(rt.sessions) as session:
        now = utcnow()
        slot_at = slot_on(weekly.current(session, rt.settings), date, now)
        who = who_for(session, as_email)
        if undo:
            weekly.unskip(session, who, slot_at, now)
        else:
            weekly.skip(session, rt.settings, who, slot_at, now)
    click.echo(f"the slot {slot_at.isoformat()} is {'back' if undo else 'skipped'}")


def slot_on(slot: weekly.Weekly, date: datetime, now: datetime) -> datetime:
    for at in weekly.coming_slots(slot, now, 60):
        if at.astimezone(slot.tz).date() == date.date():
            return at
    raise click.ClickException(f"no coming slot falls on {date.date().isoformat()}")

