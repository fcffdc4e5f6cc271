"""What counts as a database that cannot answer now (503, wait) and what is a fault (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

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
