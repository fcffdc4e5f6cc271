"""Revision 0023: on PostgreSQL the ledger's foreign keys give way to triggers with their actions."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.migrations import alembic_config, upgrade
from tests.delivery.test_sweeper import started

KEYS = {("issue_id", "issues", "CASCADE"), ("subscriber_id", "subscribers", "SET NULL")}


def ledger_keys(url: str) -> set[tuple[str, str, str | None]]:
    """The ledger's foreign keys: (column, the table it refers to, its ON DELETE)."""
    engine = create_engine(url)
    try:
        keys = inspect(engine).get_foreign_keys("deliveries")
    finally:
        engine.dispose()
    return {(key["constrained_columns"][0], key["referred_table"], key["options"].get("ondelete"))
            for key in keys}


def test_0023_drops_the_keys_on_postgresql_only_and_its_downgrade_settles_what_they_refuse(
        fresh_url: str) -> None:
    postgres = fresh_url.startswith("postgresql")
    assert ledger_keys(fresh_url) == (set() if postgres else KEYS)
    if not postgres:
        command.downgrade(alembic_config(fresh_url), "0022")  # nothing to undo
        assert ledger_keys(fresh_url) == KEYS
        return
    engine = create_engine(fresh_url)
    try:
        with Session(engine) as session, session.begin():
            issue_id, ids = started(session, 3)
            gone, _ = started(session, 2, number=2)
        with engine.begin() as connection:  # what only a hand without the triggers leaves
            for table, row in (("subscribers", "(SELECT subscriber_id FROM deliveries"
                                f" WHERE id = {ids[0]})"), ("issues", str(gone))):
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
                connection.execute(text(f"DELETE FROM {table} WHERE id = {row}"))
                connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        command.downgrade(alembic_config(fresh_url), "0022")
        assert ledger_keys(fresh_url) == KEYS
        with engine.connect() as connection:
            readers = connection.execute(text(
                f"SELECT subscriber_id FROM deliveries WHERE issue_id = {issue_id} ORDER BY id"))
            assert [r is None for (r,) in readers] == [True, False, False]
            orphans = connection.execute(text(
                f"SELECT count(*) FROM deliveries WHERE issue_id = {gone}")).scalar_one()
            assert orphans == 0
            functions = connection.execute(text(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'chapar_%_deleted'")).scalar_one()
            assert functions == 0

        upgrade(fresh_url)
        assert ledger_keys(fresh_url) == set()
        with Session(engine) as session, session.begin():
            session.execute(text(f"DELETE FROM issues WHERE id = {issue_id}"))
            assert ledger.counts(session, issue_id)["queued"] == 0
    finally:
        engine.dispose()
