"""The sweeper: nothing the broker loses, and no worker that dies, loses a message.

Two beat tasks:

- `recover` (chapar.recover_leases, every CHAPAR_LEASE_CHECK_SECONDS, 5 s): takes
  back the rows of a worker that died once their lease ran out. Rows it left
  `sending` become recorded uncertain outcomes (and are retried under the
  at-least-once policy); rows it had claimed but not yet attempted are due again.
  Each issue it touched is rung, so another worker sends them at once. It reads
  only the claims whose lease ran out and their rows, by key, so it may run often.
  With the default 20 s lease, a SIGKILLed worker's rows are sending again within
  lease + check interval + one claim, about 26 s.
- `sweep` (chapar.sweep_deliveries, every CHAPAR_BEAT_TICK_SECONDS, a minute):
  does the same, fails rows past their give-up time, finishes issues with nothing
  pending, and rings the doorbell again for every sending issue that has due
  rows: if Redis lost every message, this is how the send carries on.

Leases are compared with the database's clock (`ledger.database_now`), the one
clock the workers' leases are written with; sender.py says why that is safe.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime

log = logging.getLogger(__name__)
RINGS_PER_ISSUE = 2  # one per worker process is enough; extra rings find nothing to claim


@dataclass
class SweepReport:
    uncertain: int = 0
    failed: int = 0
    finished: list[int] = field(default_factory=list)
    rung: list[int] = field(default_factory=list)


def sweep_ledger(session: Session, now: datetime, resend_uncertain: bool) -> SweepReport:
    """Settle expired leases and give-up times; say which issues need workers."""
    report = SweepReport(
        uncertain=ledger.expire_leases(session, now, resend_uncertain),
        failed=ledger.fail_expired(session, now),
    )
    # A chunk on the wire when its issue was cancelled may come back deferred: settle it.
    # Only issues whose counts say so are looked through (their rows, by the unique index).
    cancelled = [issue_id for issue_id, counter in ledger.counted(session, session.scalars(
        select(Issue.id).where(Issue.status == IssueStatus.CANCELLED))).items()
        if any(counter[status.value] for status in ledger.CLAIMABLE)]
    session.execute(
        update(Delivery)
        .where(Delivery.issue_id.in_(cancelled), Delivery.status.in_(ledger.CLAIMABLE))
        .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    sending = session.scalars(select(Issue.id).where(Issue.status == IssueStatus.SENDING)).all()
    for issue_id in sending:
        cancel_erased(session, issue_id, now)
        if ledger.finish_if_done(session, issue_id, now):
            report.finished.append(issue_id)
        elif ledger.has_due_rows(session, issue_id, now):
            report.rung.append(issue_id)
    return report


def cancel_erased(session: Session, issue_id: int, now: datetime) -> None:
    """Cancel the unsent rows of readers erased while their issue was sending.

    Erasing a reader sets its rows' subscriber to NULL (see `Delivery.subscriber_id`), and the
    claims walk an issue by subscriber, so they would never reach those rows; nobody
    is left to mail. Found through the unique (issue_id, subscriber_id) index. The
    issue's row is locked first, as a claim locks it before it writes rows.
    """
    session.execute(select(Issue.id).where(Issue.id == issue_id).with_for_update())
    session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.subscriber_id.is_(None),
               Delivery.status.in_(ledger.CLAIMABLE))
        .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None, updated_at=now,
                last_error="subscriber erased")
        .execution_options(synchronize_session=False)
    )


def sweep(rt: Runtime, now: datetime) -> SweepReport:
    """The `chapar.sweep_deliveries` task: sweep, commit, then ring."""
    from service.ops import incidents, marks

    with unit_of_work(rt.sessions) as session:
        report = sweep_ledger(session, ledger.database_now(session), rt.settings.resend_uncertain)
        if report.uncertain:
            incidents.record(session, incidents.LEASES_SWEPT, now,
                             f"{report.uncertain} rows left sending by a stopped worker")
        if report.failed:
            incidents.record(session, incidents.GAVE_UP, now,
                             f"{report.failed} deferred rows past their give-up time failed")
        marks.record(session, marks.SWEEPER, now)
    for issue_id in report.rung:
        for _ in range(RINGS_PER_ISSUE):
            rt.ring("chapar.send_batch", issue_id)
    return report


@dataclass
class Recovery:
    uncertain: Counter[int] = field(default_factory=Counter)  # rows left `sending`, per issue
    returned: Counter[int] = field(default_factory=Counter)  # claimed rows due again, per issue

    @property
    def issues(self) -> list[int]:
        return sorted(set(self.uncertain) | set(self.returned))


def recover_ledger(session: Session, now: datetime, resend_uncertain: bool) -> Recovery:
    """Take back every row whose lease ran out by `now` (the database's clock)."""
    return Recovery(*ledger.take_back(session, now, resend_uncertain))


def recover(rt: Runtime, now: datetime) -> Recovery:
    """The `chapar.recover_leases` task: take back expired leases, commit, ring their issues."""
    from service.ops import incidents

    with unit_of_work(rt.sessions) as session:
        found = recover_ledger(session, ledger.database_now(session), rt.settings.resend_uncertain)
        for issue_id in found.issues:
            incidents.record(session, incidents.LEASES_SWEPT, now, describe(found, issue_id),
                             issue_id=issue_id)
    for issue_id in found.issues:
        log.warning("issue %s: %s", issue_id, describe(found, issue_id))
        try:
            for _ in range(RINGS_PER_ISSUE):
                rt.ring("chapar.send_batch", issue_id)
        except Exception as exc:  # the broker is down: the rows are due, the next sweep rings
            log.warning("could not ring for issue %s: %s", issue_id, exc)
    return found


def describe(found: Recovery, issue_id: int) -> str:
    """«lease ran out: 30 rows left sending are uncertain, 470 claimed rows are due again»."""
    parts = []
    if found.uncertain[issue_id]:
        parts.append(f"{found.uncertain[issue_id]} rows left sending are uncertain")
    if found.returned[issue_id]:
        parts.append(f"{found.returned[issue_id]} claimed rows are due again")
    return "lease ran out: " + ", ".join(parts)
