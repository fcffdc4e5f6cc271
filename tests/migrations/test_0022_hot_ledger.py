"""Revision 0022: no ledger index names `status`; only waiting rows keep a next attempt."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from service.migrations import alembic_config, upgrade
from tests.delivery.test_sweeper import started
from tests.migrations.test_0018_deferred_index import ledger_indexes


def due_again_predicate(engine: Engine) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_due_again'"
        else:
            query = "SELECT sql FROM sqlite_master WHERE name = 'ix_deliveries_due_again'"
        return str(connection.execute(text(query)).scalar_one()).split("WHERE", 1)[1]


def fillfactor(engine: Engine) -> int | None:
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        options = connection.execute(text(
            "SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")).scalar_one()
    found = dict(option.split("=") for option in options or [])
    return int(found["fillfactor"]) if "fillfactor" in found else None


def test_0022_drops_the_status_index_and_clears_next_attempts_of_settled_rows(
        fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    try:
        assert "ix_deliveries_issue_status" not in ledger_indexes(fresh_url)
        assert "status" not in due_again_predicate(engine)
        with Session(engine) as session, session.begin():
            _, ids = started(session, 4)
        command.downgrade(alembic_config(fresh_url), "0021")
        assert "ix_deliveries_issue_status" in ledger_indexes(fresh_url)
        assert "status" in due_again_predicate(engine)
        assert fillfactor(engine) is None
        with engine.begin() as connection:
            # Before 0022 a row deferred once and then sent kept its `next_attempt_at`.
            for row, status in zip(ids, ("sent", "deferred", "failed"), strict=False):
                connection.execute(text(
                    f"UPDATE deliveries SET status = '{status}', next_attempt_at = created_at"
                    f" WHERE id = {row}"))

        upgrade(fresh_url)
        assert "ix_deliveries_issue_status" not in ledger_indexes(fresh_url)
        with engine.connect() as connection:
            waiting = connection.execute(text(
                "SELECT status FROM deliveries WHERE next_attempt_at IS NOT NULL")).scalars()
            assert list(waiting) == ["deferred"]
        assert fillfactor(engine) == (50 if engine.dialect.name == "postgresql" else None)
    finally:
        engine.dispose()
