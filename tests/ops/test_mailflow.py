"""The failure panel's figures: from the counts and the index of rows due again where it can."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import DeliveryStatus
from service.ops import mailflow
from tests.delivery.factories import NOW
from tests.delivery.test_ledger import LEASE
from tests.delivery.test_sweeper import started


def test_a_send_whose_only_trouble_is_deferred_rows_shows_them_by_domain_and_due_time(
        session: Session) -> None:
    issue_id, ids = started(session, 4)
    ledger.claim_batch(session, issue_id, "w", NOW, 4, LEASE)
    ledger.mark_sending(session, ids[:3], "w", NOW, LEASE)
    assert mailflow.failures(session, issue_id, NOW).domains == []  # nothing failing yet
    soon = NOW + timedelta(minutes=5)
    ledger.record_outcomes(session, [
        ledger.Outcome(ids[0], DeliveryStatus.SENT, 250),
        ledger.Outcome(ids[1], DeliveryStatus.DEFERRED, 451, "later", retry_at=soon),
        ledger.Outcome(ids[2], DeliveryStatus.DEFERRED, 451, "later", retry_at=soon),
    ], "w", NOW, 60, resend_uncertain=False)
    found = mailflow.failures(session, issue_id, NOW)
    assert {(r.code, r.count) for r in found.replies} == {(250, 1), (451, 2)}
    assert [(d.domain, d.deferred, d.failed, d.last_code) for d in found.domains] \
        == [("example.test", 2, 0, 451)]
    assert found.deferred is not None
    assert (found.deferred.due_now, found.deferred.within_10_minutes) == (0, 2)
    assert found.deferred.next_at == soon
