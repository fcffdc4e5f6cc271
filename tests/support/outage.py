"""A database outage for one test: the test's own PostgreSQL database stops taking connections.

`database_closed(url)` makes the database refuse every new connection (ALLOW_CONNECTIONS
false) and ends the connections open to it, so the processes and pools using it meet
what a stopped server does to them: their pooled connections are dead, and every new
attempt fails at connect. Other tests' databases on the same server are untouched. On
leaving, the database takes connections again. (For "nothing listens there at all",
tests point a Runtime at a free port: tests.support.network.free_port.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.databases import POSTGRES_ADMIN_URL


def _admin(statement: str, **params: object) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement), params)
    finally:
        admin.dispose()


def close_database(url: str) -> None:
    name = make_url(url).database
    assert name and name.startswith("chapar_test"), f"not a test database: {name}"
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
           "WHERE datname = :name AND pid <> pg_backend_pid()", name=name)


def open_database(url: str) -> None:
    _admin(f'ALTER DATABASE "{make_url(url).database}" ALLOW_CONNECTIONS true')


@contextmanager
def database_closed(url: str) -> Iterator[None]:
    close_database(url)
    try:
        yield
    finally:
        open_database(url)
