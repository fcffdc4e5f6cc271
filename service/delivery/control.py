"""Start, pause, resume, cancel and retry an issue's send.

None of these ever resends what was sent or skips what was not: they only move
the issue's status and the ledger rows that are not settled; the workers check
the issue's status before every chunk. Domain functions take a Session and never
commit; `*_and_ring` helpers commit, then ring the workers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber

log = logging.getLogger(__name__)
MAX_RINGS = 16


class ControlError(Exception):
    """The issue is not in a state that allows this."""


def _issue(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id, with_for_update=True)
    if issue is None:
        raise ControlError(f"no issue {issue_id}")
    return issue


def pause(session: Session, issue_id: int) -> None:
    """Stop claiming; chunks already on the wire finish and are recorded."""
    issue = _issue(session, issue_id)
    if issue.status is not IssueStatus.SENDING:
        raise ControlError(f"issue {issue_id} is {issue.status.value}, not sending")
    issue.status = IssueStatus.PAUSED


def resume(session: Session, issue_id: int) -> None:
    issue = _issue(session, issue_id)
    if issue.status is not IssueStatus.PAUSED:
        raise ControlError(f"issue {issue_id} is {issue.status.value}, not paused")
    issue.status = IssueStatus.SENDING


def cancel(session: Session, issue_id: int, now: datetime) -> int:
    """Cancel every row not yet attempted or waiting for a retry; returns how many."""
    issue = _issue(session, issue_id)
    if issue.status not in (IssueStatus.SENDING, IssueStatus.PAUSED, *ledger.STARTABLE):
        raise ControlError(f"issue {issue_id} is {issue.status.value}")
    issue.status = IssueStatus.CANCELLED
    issue.scheduled_for = None
    issue.finished_at = now
    result = session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status.in_(ledger.CLAIMABLE))
        .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def retry_failed(session: Session, issue_id: int, now: datetime, retry_for: timedelta) -> int:
    """Queue the failed rows again (only subscribers still confirmed); returns how many."""
    issue = _issue(session, issue_id)
    if issue.status not in (IssueStatus.SENT, IssueStatus.SENDING, IssueStatus.PAUSED):
        raise ControlError(f"issue {issue_id} is {issue.status.value}")
    confirmed = select(Subscriber.id).where(Subscriber.status == Status.CONFIRMED)
    result = session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.FAILED,
               Delivery.subscriber_id.in_(confirmed))
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=now,
                give_up_at=now + retry_for, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count and issue.status is IssueStatus.SENT:
        issue.status = IssueStatus.SENDING
        issue.finished_at = None
    return count


def rings_for(rows: int, batch_size: int) -> int:
    """How many batch tasks to enqueue: one per batch, at most MAX_RINGS (each drains)."""
    return max(1, min(MAX_RINGS, -(-rows // max(1, batch_size))))


def start_and_ring(rt: Runtime, issue_id: int, now: datetime) -> int | None:
    """Fan out an issue (one INSERT ... SELECT), commit, then ring the workers."""
    retry_for = timedelta(hours=rt.settings.retry_for_hours)
    with unit_of_work(rt.sessions) as session:
        rows = ledger.start_send(session, issue_id, now, retry_for)
        if rows == 0:
            ledger.finish_if_done(session, issue_id, now)
    if rows:
        ring_fanned_out(rt, issue_id, rows)
    return rows


def ring_fanned_out(rt: Runtime, issue_id: int, rows: int) -> None:
    """After the commit that wrote an issue's ledger rows: analyse, then ring the workers."""
    refresh_statistics(rt)
    for _ in range(rings_for(rows, rt.settings.send_batch_size)):
        rt.ring("chapar.send_batch", issue_id)


def refresh_statistics(rt: Runtime) -> None:
    """Give PostgreSQL's planner the ledger's new size before the workers start.

    Right after a large fan-out the table has no statistics (autovacuum gets to it
    minutes later), and the claim and the prepared `mark_sending` then get plans
    that scan every queued row per chunk: a million-row send ran at half speed
    until analysed. Runs after the fan-out's commit, so it sees the new rows. Only
    a hint: a failure is logged, the send goes on. SQLite's planner needs nothing.
    """
    if rt.engine.dialect.name == "sqlite":
        return
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("ANALYZE deliveries"))
            connection.commit()
    except SQLAlchemyError as exc:
        log.warning("ANALYZE deliveries after the fan-out failed: %s", exc)


def ring(rt: Runtime, issue_id: int) -> None:
    """Wake the workers for an issue; used after resume and retry-failed commit."""
    for _ in range(2):
        rt.ring("chapar.send_batch", issue_id)
