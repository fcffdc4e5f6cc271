"""Revision 0017 adds the sending processes' unit numbers and takes them away again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config, upgrade


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0017_adds_ops_writers_and_downgrades_cleanly(fresh_url: str) -> None:
    assert "ops_writers" in tables(fresh_url)  # migrated to head
    command.downgrade(alembic_config(fresh_url), "0016")
    assert "ops_writers" not in tables(fresh_url)
    assert "ops_counters" in tables(fresh_url)
    upgrade(fresh_url)
    assert "ops_writers" in tables(fresh_url)
