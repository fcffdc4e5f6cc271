"""Revision 0020: first claims walk the issue by a cursor; rows due again have their own index."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.migrations import alembic_config, upgrade
from tests.delivery.factories import NOW
from tests.delivery.test_sweeper import started
from tests.migrations.test_0018_deferred_index import ledger_indexes

LEASE = timedelta(seconds=20)


def test_0020_leaves_no_row_unclaimable_either_way(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    try:
        with Session(engine) as session, session.begin():
            issue_id, ids = started(session, 4)
            assert len(ledger.claim_batch(session, issue_id, "w", NOW, 2, LEASE)) == 2

        # Down: the claim's fresh rows get its worker's name, the cursor goes.
        command.downgrade(alembic_config(fresh_url), "0019")
        assert "claimed_through" not in {c["name"] for c in inspect(engine).get_columns("issues")}
        assert "ix_deliveries_deferred" in ledger_indexes(fresh_url)
        with engine.begin() as connection:
            workers = connection.execute(text("SELECT worker FROM deliveries ORDER BY id")).scalars()
            assert list(workers) == ["w", "w", None, None]
            # A row some worker once held and gave back (0019 cleared no name) ...
            connection.execute(text("DELETE FROM delivery_claims"))
            connection.execute(text(f"UPDATE deliveries SET worker = 'gone' WHERE id = {ids[0]}"))

        # Up: ... is due again, not lost behind the cursor.
        upgrade(fresh_url)
        assert "ix_deliveries_due_again" in ledger_indexes(fresh_url)
        with Session(engine) as session, session.begin():
            later = NOW + timedelta(minutes=1)
            taken = ledger.claim_batch(session, issue_id, "v", later, 10, LEASE)
            assert sorted(r.delivery_id for r in taken) == ids
    finally:
        engine.dispose()
