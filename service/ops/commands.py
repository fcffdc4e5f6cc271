"""`chapar ops ...`: every action of the ops console, from the command line, audited as `cli`."""

from __future__ import annotations

from collections.abc import Callable

import click

from service.clock import utcnow
from service.commands import opened_runtime
from service.ops import actions
from service.ops.actions import Settle
from service.runtime import Runtime
from service.staff.audit import CLI


@click.group()
def ops() -> None:
    """The ops console's actions, and the watcher that emails ops."""


def _run(act: Callable[[Runtime], str]) -> None:
    with opened_runtime() as rt:
        try:
            click.echo(act(rt))
        except actions.ActionRefused as exc:
            raise click.ClickException(str(exc)) from exc


@ops.command("pause")
@click.argument("number", type=int)
def pause(number: int) -> None:
    """Pause issue NUMBER's send."""
    _run(lambda rt: actions.change_send(rt, CLI, "pause", number, utcnow()))


@ops.command("resume")
@click.argument("number", type=int)
def resume(number: int) -> None:
    """Resume issue NUMBER's send."""
    _run(lambda rt: actions.change_send(rt, CLI, "resume", number, utcnow()))


@ops.command("cancel")
@click.argument("number", type=int)
def cancel(number: int) -> None:
    """Cancel the rows of issue NUMBER not yet sent."""
    _run(lambda rt: actions.change_send(rt, CLI, "cancel", number, utcnow()))


@ops.command("retry-deferred")
@click.argument("number", type=int)
def retry_deferred(number: int) -> None:
    """Try issue NUMBER's deferred rows now instead of after their back-off."""
    _run(lambda rt: actions.retry_deferred_now(rt, CLI, number, utcnow()))


@ops.command("settle-uncertain")
@click.argument("number", type=int)
@click.option("--resend", "how", flag_value=Settle.RESEND.value, help="Send them again.")
@click.option("--as-sent", "how", flag_value=Settle.AS_SENT.value, help="Record them as sent.")
def settle_uncertain(number: int, how: str | None) -> None:
    """Settle issue NUMBER's uncertain rows (the server may or may not have taken them)."""
    if how is None:
        raise click.UsageError("say --resend or --as-sent")
    _run(lambda rt: actions.settle(rt, CLI, number, Settle(how), utcnow()))


@ops.command("pause-domain")
@click.argument("domain")
def pause_domain(domain: str) -> None:
    """Stop sending to a receiving domain until resumed."""
    _run(lambda rt: actions.pause_domain(rt, CLI, domain, utcnow()))


@ops.command("resume-domain")
@click.argument("domain")
def resume_domain(domain: str) -> None:
    """Send to a paused receiving domain again."""
    _run(lambda rt: actions.resume_domain(rt, CLI, domain, utcnow()))


@ops.command("drain")
@click.argument("worker")
def drain(worker: str) -> None:
    """Ask WORKER (its Celery name) to take no new work."""
    _run(lambda rt: actions.drain_worker(rt, CLI, worker, utcnow()))


@ops.command("watch")
def watch() -> None:
    """One pass of the watcher: record lost workers, email due alerts, prune incidents."""
    from service.ops.alerts import watch_once

    with opened_runtime() as rt:
        for condition in watch_once(rt, utcnow()):
            click.echo(f"{condition.key}: {condition.text}")
