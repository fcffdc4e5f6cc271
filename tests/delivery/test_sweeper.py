"""The sweeper settles what crashes and lost doorbells leave behind."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryClaim, DeliveryStatus
from service.delivery.sweeper import sweep_ledger
from service.digests.models import Issue, IssueStatus
from tests.delivery.factories import NOW, add_subscribers, make_issue


def started(session: Session, subscribers: int, number: int = 1) -> tuple[int, list[int]]:
    add_subscribers(session, subscribers, prefix=f"i{number}-")
    issue_id = make_issue(session, number).id
    ledger.start_send(session, issue_id, NOW, timedelta(hours=48))
    ids = list(session.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)
                               .order_by(Delivery.id)))
    return issue_id, ids


def set_rows(session: Session, ids: list[int], **values: object) -> None:
    session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(**values))


def hold(session: Session, issue_id: int, ids: list[int], worker: str, until: datetime) -> None:
    """Rows `sending` under `worker`'s claim, leased until `until`."""
    set_rows(session, ids, status=DeliveryStatus.SENDING, worker=worker)
    session.add(DeliveryClaim(issue_id=issue_id, worker=worker, lease_until=until, ids=ids,
                              created_at=NOW))
    session.flush()


def claim(session: Session, worker: str) -> DeliveryClaim:
    found = session.scalar(select(DeliveryClaim).where(DeliveryClaim.worker == worker)
                           .execution_options(populate_existing=True))
    assert found is not None
    return found


def row(session: Session, delivery_id: int) -> Delivery:
    found = session.get(Delivery, delivery_id, populate_existing=True)
    assert found is not None
    return found


def test_rows_a_dead_worker_left_sending_become_recorded_uncertain_retries(session: Session) -> None:
    issue_id, ids = started(session, 3)
    hold(session, issue_id, ids[:2], "dead", NOW - timedelta(seconds=1))
    hold(session, issue_id, ids[2:], "alive", NOW + timedelta(minutes=5))
    report = sweep_ledger(session, NOW, resend_uncertain=True)
    assert report.uncertain == 2 and report.rung == [issue_id]
    assert [row(session, i).status for i in ids] == [DeliveryStatus.DEFERRED] * 2 + [DeliveryStatus.SENDING]
    assert row(session, ids[0]).uncertain_count == 1
    assert row(session, ids[2]).uncertain_count == 0  # its worker may still be alive


def test_hold_policy_keeps_uncertain_rows_for_ops(session: Session) -> None:
    issue_id, ids = started(session, 1)
    hold(session, issue_id, ids, "dead", NOW - timedelta(seconds=1))
    sweep_ledger(session, NOW, resend_uncertain=False)
    assert row(session, ids[0]).status is DeliveryStatus.UNCERTAIN


def test_deferred_rows_past_their_give_up_time_fail_and_the_issue_finishes(session: Session) -> None:
    issue_id, ids = started(session, 2)
    set_rows(session, ids[:1], status=DeliveryStatus.SENT)
    set_rows(session, ids[1:], status=DeliveryStatus.DEFERRED, next_attempt_at=NOW,
             give_up_at=NOW - timedelta(minutes=1))
    report = sweep_ledger(session, NOW, resend_uncertain=True)
    assert report.failed == 1 and report.finished == [issue_id] and not report.rung
    issue = session.get(Issue, issue_id, populate_existing=True)
    assert issue is not None and issue.status is IssueStatus.SENT and issue.finished_at == NOW


def test_only_due_rows_ring_and_paused_issues_stay_quiet(session: Session) -> None:
    waiting, ids = started(session, 1, number=1)
    set_rows(session, ids, status=DeliveryStatus.DEFERRED, next_attempt_at=NOW + timedelta(minutes=5))
    paused, _ = started(session, 1, number=2)
    session.execute(update(Issue).where(Issue.id == paused).values(status=IssueStatus.PAUSED))
    report = sweep_ledger(session, NOW, resend_uncertain=True)
    assert report.rung == [] and report.finished == []
    assert sweep_ledger(session, NOW + timedelta(minutes=6), resend_uncertain=True).rung == [waiting]


def test_rows_of_a_cancelled_issue_that_came_back_deferred_are_cancelled(session: Session) -> None:
    issue_id, ids = started(session, 2)
    session.execute(update(Issue).where(Issue.id == issue_id).values(status=IssueStatus.CANCELLED))
    set_rows(session, ids[:1], status=DeliveryStatus.DEFERRED)
    set_rows(session, ids[1:], status=DeliveryStatus.SENT)
    sweep_ledger(session, NOW, resend_uncertain=True)
    assert [row(session, i).status for i in ids] == [DeliveryStatus.CANCELLED, DeliveryStatus.SENT]


def test_the_recovery_takes_back_a_dead_workers_rows_once_their_lease_ran_out(
        session: Session) -> None:
    from service.delivery.sweeper import describe, recover_ledger

    issue_id, ids = started(session, 5)
    lease = timedelta(seconds=20)
    ledger.claim_batch(session, issue_id, "dead", NOW, 4, lease)
    ledger.mark_sending(session, ids[:2], "dead", NOW, lease)
    assert not recover_ledger(session, NOW + timedelta(seconds=19), resend_uncertain=True).issues
    found = recover_ledger(session, NOW + timedelta(seconds=21), resend_uncertain=True)
    assert found.uncertain == {issue_id: 2} and found.returned == {issue_id: 2}
    assert describe(found, issue_id) == ("lease ran out: 2 rows left sending are uncertain, "
                                         "2 claimed rows are due again")
    assert [row(session, i).status for i in ids[:2]] == [DeliveryStatus.DEFERRED] * 2
    assert session.scalar(select(func.count()).select_from(DeliveryClaim)) == 0
    assert row(session, ids[2]).uncertain_count == 0  # claimed, never sent: not uncertain
    # Everything is due now: another worker takes all five.
    later = NOW + timedelta(seconds=22)
    assert len(ledger.claim_batch(session, issue_id, "alive", later, 10, lease)) == 5


def test_beat_runs_the_lease_recovery_every_lease_check(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from worker.app import beat_schedule

    entry = beat_schedule(make_settings(tmp_path, lease_check_seconds=3))["recover-leases"]
    assert entry["task"] == "chapar.recover_leases" and entry["schedule"] == timedelta(seconds=3)


def test_the_unsent_row_of_a_reader_erased_during_the_send_is_cancelled(session: Session) -> None:
    # Claims walk the issue by subscriber: a row whose reader was erased (the foreign
    # key set its subscriber to NULL) is never reached, and the issue would never end.
    issue_id, ids = started(session, 2)
    lease = timedelta(seconds=20)
    assert [r.delivery_id for r in ledger.claim_batch(session, issue_id, "w", NOW, 1, lease)
            ] == ids[:1]
    set_rows(session, ids[1:], subscriber_id=None)
    assert ledger.mark_sending(session, ids[:1], "w", NOW, lease) == set(ids[:1])
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "w",
                           NOW, 60, resend_uncertain=True)
    assert ledger.end_claim(session, "w", NOW)
    assert ledger.claim_batch(session, issue_id, "v", NOW, 10, lease) == []
    report = sweep_ledger(session, NOW, resend_uncertain=True)
    assert row(session, ids[1]).status is DeliveryStatus.CANCELLED
    assert report.finished == [issue_id]
