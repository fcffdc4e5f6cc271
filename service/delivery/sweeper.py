"""The sweeper: nothing the broker loses, and no worker that dies, loses a message.

Run every minute by beat. It turns rows a dead worker left `sending` into recorded
uncertain outcomes, fails rows past their give-up time, finishes issues with
nothing pending, and rings the doorbell again for every sending issue that has
due rows: if Redis lost every message, this is how the send carries on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime

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
    cancelled = select(Issue.id).where(Issue.status == IssueStatus.CANCELLED)
    session.execute(
        update(Delivery)
        .where(Delivery.issue_id.in_(cancelled), Delivery.status.in_(ledger.CLAIMABLE))
        .values(status=DeliveryStatus.CANCELLED, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    sending = session.scalars(select(Issue.id).where(Issue.status == IssueStatus.SENDING)).all()
    for issue_id in sending:
        if ledger.finish_if_done(session, issue_id, now):
            report.finished.append(issue_id)
        elif ledger.has_due_rows(session, issue_id, now):
            report.rung.append(issue_id)
    return report


def sweep(rt: Runtime, now: datetime) -> SweepReport:
    """The `chapar.sweep_deliveries` task: sweep, commit, then ring."""
    from service.ops import incidents, marks

    with unit_of_work(rt.sessions) as session:
        report = sweep_ledger(session, now, rt.settings.resend_uncertain)
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
