"""Revision 0021: an issue's counts per status, kept by triggers, filled from the ledger."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.migrations import alembic_config, upgrade
from tests.delivery.factories import NOW, assert_counts_kept
from tests.delivery.test_ledger import LEASE
from tests.delivery.test_sweeper import started


def test_0021_counts_the_rows_already_there_and_keeps_counting(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    try:
        with Session(engine) as session, session.begin():
            issue_id, ids = started(session, 5)
            ledger.claim_batch(session, issue_id, "w", NOW, 5, LEASE)
            ledger.mark_sending(session, ids[:2], "w", NOW, LEASE)

        command.downgrade(alembic_config(fresh_url), "0020")
        assert "delivery_counts" not in inspect(engine).get_table_names()
        with engine.begin() as connection:  # rows that change while nobody counts
            connection.execute(text(f"UPDATE deliveries SET status = 'sent' WHERE id = {ids[0]}"))

        upgrade(fresh_url)
        with Session(engine) as session, session.begin():
            assert_counts_kept(session)
            found = ledger.counts(session, issue_id)
            assert (found["sent"], found["sending"], found["queued"]) == (1, 1, 3)
            ledger.record_outcomes(session, [ledger.Outcome(ids[1], ledger.DeliveryStatus.SENT)],
                                   "w", NOW, 60, resend_uncertain=False)
            assert_counts_kept(session)
            assert ledger.counts(session, issue_id)["sent"] == 2
    finally:
        engine.dispose()
