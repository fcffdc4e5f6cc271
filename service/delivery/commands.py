"""`chapar digest send|pause|resume|cancel|retry-failed N`: an issue's send by hand.

N is the issue number people see. Each command commits its change, then rings the
workers; it never sends mail itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.commands import opened_runtime
from service.db import unit_of_work
from service.delivery import control, ledger, preflight
from service.delivery.ledger import STARTABLE
from service.digests import checks
from service.digests.commands import digest
from service.digests.models import Issue
from service.settings import Settings


def issue_id_for(session: Session, number: int) -> int:
    issue_id = session.scalar(select(Issue.id).where(Issue.number == number))
    if issue_id is None:
        raise click.ClickException(f"no issue number {number}")
    return issue_id


def _change(number: int, change: Callable[[Session, int], object], then_ring: bool) -> None:
    with opened_runtime() as rt:
        try:
            with unit_of_work(rt.sessions) as session:
                issue_id = issue_id_for(session, number)
                result = change(session, issue_id)
        except control.ControlError as exc:
            raise click.ClickException(str(exc)) from exc
        if then_ring:
            control.ring(rt, issue_id)
        with rt.sessions() as session:
            counts = ledger.counts(session, issue_id)
        click.echo(f"issue {number}: {result if result is not None else 'done'}; "
                   + ", ".join(f"{k} {v}" for k, v in counts.items() if v))


@digest.command("send")
@click.argument("number", type=int)
def send(number: int) -> None:
    """Send issue NUMBER to every confirmed subscriber now, as an admin may (a second call
    sends nothing twice). The pre-send checks and the relay check run first; the desk's
    approval rules are `digest send-now`'s."""
    with opened_runtime() as rt:
        with rt.sessions() as session:
            issue_id = issue_id_for(session, number)
            status = session.scalar(select(Issue.status).where(Issue.id == issue_id))
        if status in STARTABLE:
            try:
                with unit_of_work(rt.sessions) as session:
                    checks.require_passing(rt, session, session.get_one(Issue, issue_id), utcnow())
                preflight.check_before_send(rt, utcnow())
            except (checks.ChecksBlocked, preflight.SendRefused) as exc:
                raise click.ClickException(str(exc)) from exc
        rows = control.start_and_ring(rt, issue_id, utcnow())
        if rows is None:
            raise click.ClickException(f"issue {number} has been sent or cancelled: see `chapar status`")
        click.echo(f"issue {number}: {rows} deliveries queued; the workers are sending")


@digest.command("pause")
@click.argument("number", type=int)
def pause(number: int) -> None:
    """Pause issue NUMBER's send; messages already on the wire finish."""
    _change(number, control.pause, then_ring=False)


@digest.command("resume")
@click.argument("number", type=int)
def resume(number: int) -> None:
    """Resume a paused send where it stopped."""
    _change(number, control.resume, then_ring=True)


@digest.command("cancel")
@click.argument("number", type=int)
def cancel(number: int) -> None:
    """Cancel the rows of issue NUMBER not yet sent."""
    _change(number, lambda s, i: f"{control.cancel(s, i, utcnow())} rows cancelled", then_ring=False)


@digest.command("retry-failed")
@click.argument("number", type=int)
def retry_failed(number: int) -> None:
    """Send issue NUMBER again to its failed rows only (still-confirmed subscribers)."""
    retry_for = timedelta(hours=Settings().retry_for_hours)
    _change(number, lambda s, i: f"{control.retry_failed(s, i, utcnow(), retry_for)} rows queued again",
            then_ring=True)
