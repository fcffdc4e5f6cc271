"""Thin tasks: plain ids in, one call into service/, nothing else.

While the database cannot be reached the periodic ones skip their run (one warning per
outage in each process, not a traceback per tick) and do their work on the next tick; a
confirmation stays owed and the confirmation sweeper rings for it again.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from service.bounces.inbox import poll_bounce_mailbox
from service.clock import utcnow
from service.ops.outages import skipped_while_unreachable
from service.runtime import Runtime
from service.subscribers.emails import ConfirmationBusy
from service.subscribers.emails import send_confirmation as send_confirmation_email
from service.subscribers.emails import sweep_confirmations as sweep_owed_confirmations

_runtime: Runtime | None = None


def runtime(task: Task[Any, Any]) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(task.app.chapar_settings)  # type: ignore[attr-defined]
        _runtime._celery = task.app
    return _runtime


def reset_runtime() -> None:
    global _runtime
    _runtime = None


@shared_task(bind=True, name="chapar.send_confirmation", max_retries=5,
             autoretry_for=(OSError, ConfirmationBusy), retry_backoff=30, retry_backoff_max=600)
def send_confirmation(self: Task[Any, Any], subscriber_id: int) -> None:
    rt = runtime(self)
    # While the database is down the confirmation stays owed; the sweeper rings again.
    with skipped_while_unreachable(rt.database_outages):
        send_confirmation_email(rt, subscriber_id, utcnow())


@shared_task(bind=True, name="chapar.sweep_confirmations")
def sweep_confirmations(self: Task[Any, Any]) -> None:
    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        sweep_owed_confirmations(rt, utcnow())


@shared_task(bind=True, name="chapar.send_batch")
def send_batch(self: Task[Any, Any], issue_id: int) -> None:
    from service.delivery.sender import send_batches

    send_batches(runtime(self), issue_id)


@shared_task(bind=True, name="chapar.sweep_deliveries")
def sweep_deliveries(self: Task[Any, Any]) -> None:
    from service.delivery.sweeper import sweep

    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        sweep(rt, utcnow())


@shared_task(bind=True, name="chapar.recover_leases")
def recover_leases(self: Task[Any, Any]) -> None:
    from service.delivery.sweeper import recover

    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        recover(rt, utcnow())


@shared_task(bind=True, name="chapar.schedule_tick")
def schedule_tick(self: Task[Any, Any]) -> None:
    from service.digests.schedule import run_tick

    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        run_tick(rt, utcnow())


@shared_task(bind=True, name="chapar.poll_bounces")
def poll_bounces(self: Task[Any, Any]) -> None:
    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        poll_bounce_mailbox(rt, utcnow)


@shared_task(bind=True, name="chapar.refresh_feeds")
def refresh_feeds(self: Task[Any, Any]) -> None:
    from service.articles.refresh import refresh_configured_feed

    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        refresh_configured_feed(rt, utcnow())


@shared_task(bind=True, name="chapar.check_links")
def check_links(self: Task[Any, Any], issue_id: int) -> None:
    from service.digests.links import check_pending_links

    check_pending_links(runtime(self), issue_id, utcnow())


@shared_task(bind=True, name="chapar.run_import")
def run_import(self: Task[Any, Any], job_id: int) -> None:
    from service.subscribers.imports import run_import as import_file

    import_file(runtime(self), job_id, utcnow)


@shared_task(bind=True, name="chapar.sweep_imports")
def sweep_imports(self: Task[Any, Any]) -> None:
    from service.subscribers.imports import sweep

    rt = runtime(self)
    with skipped_while_unreachable(rt.database_outages):
        sweep(rt, utcnow())
