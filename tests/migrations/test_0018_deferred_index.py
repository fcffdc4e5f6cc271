"""Revision 0018 turns the (status, next_attempt_at) index into a partial one, and back."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config


def ledger_indexes(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {str(index["name"]) for index in inspect(engine).get_indexes("deliveries")}
    finally:
        engine.dispose()


def test_0018_keeps_only_deferred_rows_in_the_index_and_downgrades_cleanly(fresh_url: str) -> None:
    command.downgrade(alembic_config(fresh_url), "0018")  # 0020 replaces the index again
    found = ledger_indexes(fresh_url)
    assert "ix_deliveries_deferred" in found and "ix_deliveries_status_next" not in found
    command.downgrade(alembic_config(fresh_url), "0017")
    found = ledger_indexes(fresh_url)
    assert "ix_deliveries_status_next" in found and "ix_deliveries_deferred" not in found
    command.upgrade(alembic_config(fresh_url), "0018")
    assert "ix_deliveries_deferred" in ledger_indexes(fresh_url)
