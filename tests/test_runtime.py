"""The runtime's database engine follows the pool and prepared-statement settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.pool import NullPool, QueuePool

from service.runtime import Runtime
from tests.conftest import make_settings


def driver_connection(rt: Runtime) -> Any:
    with rt.engine.connect() as connection:
        return connection.connection.dbapi_connection


def test_the_pool_size_and_prepared_statements_come_from_the_settings(
        postgresql_url: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=postgresql_url, database_pool_size=2, database_max_overflow=1,
        database_prepared_statements=False))
    try:
        assert isinstance(rt.engine.pool, QueuePool)
        assert rt.engine.pool.size() == 2 and rt.engine.pool._max_overflow == 1
        assert driver_connection(rt).prepare_threshold is None  # PgBouncer before 1.21
    finally:
        rt.close()


def test_by_default_psycopg_prepares_and_each_process_may_hold_fifteen(
        postgresql_url: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=postgresql_url))
    try:
        assert isinstance(rt.engine.pool, QueuePool)
        assert rt.engine.pool.size() + rt.engine.pool._max_overflow == 15
        assert driver_connection(rt).prepare_threshold == 5
    finally:
        rt.close()


def test_a_caller_bringing_its_own_pool_class_gets_no_pool_size(
        postgresql_url: str, tmp_path: Path) -> None:
    # The worker's heartbeat keeps no connection open: NullPool takes no size.
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=postgresql_url,
                                             database_pool_size=3), poolclass=NullPool)
    try:
        assert isinstance(rt.engine.pool, NullPool)
        assert driver_connection(rt).prepare_threshold == 5
    finally:
        rt.close()
