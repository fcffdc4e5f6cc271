"""Revision 0019 moves the lease from every held ledger row to one row per claim, and back."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryClaim, DeliveryStatus
from service.migrations import alembic_config, upgrade
from tests.delivery.factories import NOW
from tests.delivery.test_sweeper import started

LEASE = timedelta(seconds=20)


def test_0019_keeps_every_held_row_held_across_the_upgrade_and_the_downgrade(
        fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    try:
        with Session(engine) as session, session.begin():
            issue_id, ids = started(session, 4)
            assert len(ledger.claim_batch(session, issue_id, "dead", NOW, 2, LEASE)) == 2
            assert ledger.mark_sending(session, ids[:1], "dead", NOW, LEASE) == {ids[0]}

        command.downgrade(alembic_config(fresh_url), "0018")
        assert "delivery_claims" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            leased = connection.execute(text(
                "SELECT id FROM deliveries WHERE lease_until IS NOT NULL ORDER BY id")).scalars()
            assert list(leased) == ids[:2]  # the claim's lease, back on its rows
        assert "ix_deliveries_lease_until" in {
            index["name"] for index in inspect(engine).get_indexes("deliveries")}

        upgrade(fresh_url)
        assert "lease_until" not in {c["name"] for c in inspect(engine).get_columns("deliveries")}
        with Session(engine) as session, session.begin():
            claim = session.scalars(select(DeliveryClaim)).one()
            assert (claim.worker, claim.issue_id, claim.ids) == ("dead", issue_id, ids[:2])
            assert claim.lease_until == NOW + LEASE
            # The worker that held them died: its rows are taken back once the lease ran out.
            uncertain, due = ledger.take_back(session, NOW + LEASE + timedelta(seconds=1), True)
            assert (uncertain, due) == ({issue_id: 1}, {issue_id: 1})
            assert session.get(Delivery, ids[0]).status is DeliveryStatus.DEFERRED  # type: ignore[union-attr]
    finally:
        engine.dispose()
