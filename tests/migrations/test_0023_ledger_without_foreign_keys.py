"""Revision 0023: on PostgreSQL the ledger's foreign keys give way to triggers with their actions."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.migrations import alembic_config, upgrade
from tests.delivery.test_sweeper import started

KEYS = {("issue_id", "issues"), ("subscriber_id", "subscribers")}


def ledger_keys(url: str) -> set[tuple[str, str]]:
    """The ledger's foreign keys to issues and subscribers: (column, table it refers to)."""
    engine = create_engine(url)
    try:
        keys = inspect(engine).get_foreign_keys("deliveries")
    finally:
        engine.dispose()
    return {(key["constrained_columns"][0], key["referred_table"]) for key in keys}


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
        with engine.begin() as connection:  # what only a hand without the triggers leaves
            connection.execute(text("ALTER TABLE subscribers DISABLE TRIGGER USER"))
            connection.execute(text("DELETE FROM subscribers WHERE id = (SELECT subscriber_id"
                                    f" FROM deliveries WHERE id = {ids[0]})"))
            connection.execute(text("ALTER TABLE subscribers ENABLE TRIGGER USER"))
        command.downgrade(alembic_config(fresh_url), "0022")
        assert ledger_keys(fresh_url) == KEYS
        with engine.connect() as connection:
            readers = connection.execute(text(
                f"SELECT subscriber_id FROM deliveries WHERE issue_id = {issue_id} ORDER BY id"))
            assert [r is None for (r,) in readers] == [True, False, False]
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
