"""`chapar subscribers export/unsubscribe/resend-confirmation/erase`: the desk's reader actions
and its filtered export, from the command line, audited as `cli`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

import click

from service.clock import utcnow
from service.commands import opened_runtime
from service.runtime import Runtime
from service.staff.audit import CLI
from service.subscribers import actions, search
from service.subscribers.models import Status


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The readers page's filters as options; days are Jalali (1405/09/08) or ISO, in TIMEZONE."""
    for option in reversed([
        click.option("--address", default="", help="Part of the address, any case (3+ characters)."),
        click.option("--status", default=None, type=click.Choice([s.value for s in Status]),
                     help="Only this status."),
        click.option("--source", default="", help="Only this consent source (exactly)."),
        click.option("--joined-from", default="",
                     help="Joined on or after this day (1405/09/08 or 2026-11-29, in TIMEZONE)."),
        click.option("--joined-to", default="", help="Joined on or before this day."),
    ]):
        command = option(command)
    return command


def read_filter(rt: Runtime, address: str, status: str, source: str, joined_from: str,
                joined_to: str) -> search.ReaderFilter:
    try:
        return search.ReaderFilter.from_text(rt.settings.tz, address=address, status=status,
                                             source=source, joined_from=joined_from,
                                             joined_to=joined_to)
    except search.FilterError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc


@click.command("export")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-")
@filter_options
def export(output: TextIO, address: str, status: str | None, source: str, joined_from: str,
           joined_to: str) -> None:
    """Export subscribers as CSV (email, status, ISO timestamps, consent), oldest first."""
    with opened_runtime() as rt:
        chosen = read_filter(rt, address, status or "", source, joined_from, joined_to)
        actions.record_export(rt, CLI, chosen, utcnow())
        written = search.write_csv(output, rt.sessions, chosen)
    click.echo(f"exported {written} subscribers", err=True)


def _act(address: str, act: Callable[[Runtime, int], actions.Done], done: str) -> None:
    with opened_runtime() as rt:
        try:
            act(rt, actions.find_id(rt, address))
        except actions.ActionRefused as exc:
            if exc.until is not None:
                raise click.ClickException(f"{exc}; the next may be asked for after "
                                           f"{exc.until.astimezone(rt.settings.tz).isoformat()}") from exc
            raise click.ClickException(str(exc)) from exc
    click.echo(done)


@click.command("unsubscribe")
@click.argument("address")
def unsubscribe(address: str) -> None:
    """Unsubscribe ADDRESS, as its own unsubscribe link would."""
    _act(address, lambda rt, sid: actions.unsubscribe(rt, CLI, sid, utcnow()), "unsubscribed")


@click.command("resend-confirmation")
@click.argument("address")
def resend_confirmation(address: str) -> None:
    """Send pending ADDRESS its confirmation email again (at most one per address per day)."""
    _act(address, lambda rt, sid: actions.resend_confirmation(rt, CLI, sid, utcnow()),
         "a confirmation email is on its way")


@click.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(address: str, yes: bool) -> None:
    """Erase ADDRESS and its history for good; only a keyed hash stays, so no import re-adds it."""
    if not yes:
        click.confirm(f"Erase {address} and everything held about it? This cannot be undone",
                      abort=True, err=True)
    _act(address, lambda rt, sid: actions.erase(rt, CLI, sid, utcnow()), "erased")


