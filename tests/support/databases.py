"""Throwaway databases: one PostgreSQL database per test run, migrated with Alembic."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from service.migrations import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CHAPAR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHAPAR_TEST_REDIS", "redis://127.0.0.1:6379")


@contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL, prefix: str = "chapar_test",
                      options: Mapping[str, str] | None = None) -> Iterator[str]:
    """Create a fresh database, migrate it to head, drop it afterwards.

    `options` are PostgreSQL settings for the new database (ALTER DATABASE ... SET).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        for option, value in (options or {}).items():
            connection.execute(text(f'ALTER DATABASE "{name}" SET {option} = {value}'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database(folder: str) -> Iterator[str]:
    url = f"sqlite:///{folder}/chapar-test.db"
    upgrade(url)
    yield url


def waits_for_a_lock(engine: Engine, wait_event: str | None = None, seconds: float = 10.0) -> bool:
    """Whether a transaction in `engine`'s PostgreSQL database waits for a lock within
    `seconds`, of the kind `wait_event` names if given ("advisory", "transactionid"...):
    a thread merely slow to start is told apart from one that waits."""
    deadline = time.monotonic() + seconds
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND (CAST(:event AS text) IS NULL"
                " OR wait_event = :event)"), {"event": wait_event}).scalar_one()
            connection.rollback()  # a fresh snapshot of the activity each time
            if waiting:
                return True
            time.sleep(0.02)
    return False
