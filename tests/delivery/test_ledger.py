"""Claims are leases: a worker writes outcomes only for rows it still holds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import DeliveryStatus
from tests.delivery.factories import NOW
from tests.delivery.test_sweeper import row, started

LEASE = timedelta(minutes=5)


def test_a_slow_worker_cannot_overwrite_a_row_another_worker_took_and_sent(
        session: Session) -> None:
    issue_id, ids = started(session, 1)
    slow = ledger.claim_batch(session, issue_id, "slow", NOW, 10, LEASE)
    assert [r.delivery_id for r in slow] == ids
    later = NOW + LEASE + timedelta(seconds=1)  # the slow worker's lease ran out
    fast = ledger.claim_batch(session, issue_id, "fast", later, 10, LEASE)
    assert [r.delivery_id for r in fast] == ids
    assert ledger.mark_sending(session, ids, "fast", later, LEASE) == set(ids)
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "fast",
                           later, 60, resend_uncertain=True)
    # The slow worker reaches the row and, say, finds its domain paused: it must not
    # set a sent row back to deferred (the resend would be an unrecorded duplicate).
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.DEFERRED, 421, "paused")],
                           "slow", later, 60, resend_uncertain=True)
    assert row(session, ids[0]).status is DeliveryStatus.SENT
    assert ledger.finish_if_done(session, issue_id, later)


def test_a_renewal_extends_only_a_lease_that_still_holds(session: Session) -> None:
    issue_id, ids = started(session, 3)
    short = timedelta(seconds=20)
    assert len(ledger.claim_batch(session, issue_id, "w", NOW, 10, short)) == 3
    ledger.mark_sending(session, ids[:1], "w", NOW, short)
    later = NOW + timedelta(seconds=15)
    assert ledger.renew_leases(session, ids, "w", later, short) == 3
    assert row(session, ids[2]).lease_until == later + short
    assert ledger.renew_leases(session, ids, "someone else", later, short) == 0
    # Once it has run out the lease is not revived: the sweeper or a claim may act on it.
    gone = later + short + timedelta(seconds=1)
    assert ledger.renew_leases(session, ids, "w", gone, short) == 0
    assert ledger.claim_batch(session, issue_id, "v", gone, 10, short) != []


def test_a_chunk_transaction_run_twice_changes_nothing_the_second_time(session: Session) -> None:
    # A commit whose reply a dropped connection lost is run again by the worker.
    issue_id, ids = started(session, 2)
    ledger.claim_batch(session, issue_id, "w", NOW, 10, LEASE)
    assert ledger.mark_sending(session, ids, "w", NOW, LEASE) == set(ids)
    assert ledger.mark_sending(session, ids, "w", NOW, LEASE) == set(ids)  # still ours
    assert row(session, ids[0]).attempts == 1
    outcomes = [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250),
                ledger.Outcome(ids[1], DeliveryStatus.UNCERTAIN, None, "dropped after the dot")]
    for _ in range(2):
        ledger.record_outcomes(session, outcomes, "w", NOW, 60, resend_uncertain=True)
    assert row(session, ids[0]).status is DeliveryStatus.SENT
    assert row(session, ids[1]).status is DeliveryStatus.DEFERRED
    assert row(session, ids[1]).uncertain_count == 1  # counted once


def test_outcomes_that_arrive_after_the_sweeper_settled_the_row_keep_its_record(
        session: Session) -> None:
    issue_id, ids = started(session, 1)
    ledger.claim_batch(session, issue_id, "w", NOW, 10, LEASE)
    ledger.mark_sending(session, ids, "w", NOW, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    assert ledger.expire_leases(session, later, resend_uncertain=False) == 1
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "w",
                           later, 60, resend_uncertain=False)
    settled = row(session, ids[0])
    assert settled.status is DeliveryStatus.UNCERTAIN and settled.uncertain_count == 1


def test_leases_counts_held_sending_and_expired_rows(session: Session) -> None:
    issue_id, ids = started(session, 4)
    short = timedelta(seconds=20)
    ledger.claim_batch(session, issue_id, "w", NOW, 3, short)
    ledger.mark_sending(session, ids[:1], "w", NOW, short)
    found = ledger.leases(session, NOW + timedelta(seconds=5))
    assert (found.held, found.sending, found.expired) == (3, 1, 0)
    found = ledger.leases(session, NOW + timedelta(seconds=25))
    assert (found.held, found.expired) == (0, 3)
    assert found.oldest_expired_at == NOW + short
