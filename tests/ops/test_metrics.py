"""The per-issue gauges cover the latest issues sent and every send still going."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import ledger
from service.digests.models import Issue, IssueStatus
from service.ops.mailflow import LATEST_ISSUES
from service.ops.metrics import ChaparCollector
from service.runtime import Runtime
from tests.delivery.factories import add_subscribers, make_issue


def issues_in_gauge(rt: Runtime) -> set[str]:
    [deliveries] = [m for m in ChaparCollector(rt).collect() if m.name == "chapar_deliveries"]
    return {sample.labels["issue"] for sample in deliveries.samples}


def test_deliveries_are_counted_for_the_latest_issues_and_any_still_sending(
        runtime: Runtime) -> None:
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        add_subscribers(session, 2)
        ids = [make_issue(session, number=n).id for n in range(1, LATEST_ISSUES + 3)]
        for issue_id in ids:  # every issue sent, the oldest first
            ledger.start_send(session, issue_id, now, timedelta(hours=1))
            session.execute(update(Issue).where(Issue.id == issue_id)
                            .values(status=IssueStatus.SENT))
        # The oldest is sending again (ops queued its failed rows once more).
        session.execute(update(Issue).where(Issue.id == ids[0]).values(status=IssueStatus.SENDING))
    latest = {str(n) for n in range(3, LATEST_ISSUES + 3)}
    assert issues_in_gauge(runtime) == latest | {"1"}  # not issue 2: sent and older
