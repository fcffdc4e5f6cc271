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
