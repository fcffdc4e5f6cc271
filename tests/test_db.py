"""What counts as a database that cannot answer now (503, wait) and what is a fault (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service import db
from service.db import make_engine, unavailable
from tests.support.network import free_port


def test_a_refused_postgresql_connection_is_unavailable() -> None:
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(OperationalError) as raised:
        engine.connect()
    assert unavailable(raised.value)
    engine.dispose()


def test_a_missing_sqlite_table_is_a_fault_and_a_locked_file_is_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(OperationalError) as raised, engine.connect() as connection:
        connection.execute(text("SELECT * FROM issues"))
    assert not unavailable(raised.value)
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert unavailable(locked)
    assert not unavailable(ValueError("not a database error"))
    engine.dispose()


def test_a_connection_is_pinged_only_after_sitting_idle_and_a_dead_one_is_replaced(
        postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(postgresql_url, pool_size=1, max_overflow=0)
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    for _ in range(3):  # back in the pool a moment ago: no round trip for a ping
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    assert pings == []
    # The server drops the pooled connection while it sits idle.
    with make_engine(postgresql_url).connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as connection:  # pinged, found dead, replaced
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    assert len(pings) >= 1
    engine.dispose()
