"""Throwaway databases: one PostgreSQL database per test run, migrated with Alembic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.migrations import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CHAPAR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHAPAR_TEST_REDIS", "redis://127.0.0.1:6379")


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a fresh database, migrate it to head, drop it afterwards."""
    name = f"chapar_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
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
