"""Shared fixtures: real PostgreSQL, Redis, SMTP and Celery worker processes."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db import Base
from service.runtime import Runtime
from service.settings import Settings
from tests.support.databases import REDIS_URL, postgres_database, sqlite_database
from tests.support.rabbitmq import PrivateVhost, require_rabbitmq
from tests.support.redis_server import PrivateRedis
from tests.support.smtp import SmtpRecorder

# Properties, not timings: a busy machine must not fail a property test for being slow.
hypothesis_settings.register_profile("chapar", deadline=None)
hypothesis_settings.load_profile("chapar")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"

# A Settings() a test builds runs in test mode and signs with the test secret unless the test
# says otherwise: the embedded default would keep a generated secret in ./var of the checkout.
os.environ.setdefault("CHAPAR_ENVIRONMENT", "test")
os.environ.setdefault("CHAPAR_SECRET_KEY", TEST_SECRET)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_database(str(tmp_path_factory.mktemp("sqlite"))) as url:
        yield url


def claim_redis_index() -> tuple[int, str | None]:
    """A Redis database number no other test run on this machine holds, and its claim key.

    Runs side by side on one machine would otherwise flush each other's queues and
    limits, or consume each other's tasks. Claims live in database 0 and expire, so a
    killed run frees its number; if all are held, share one as before.
    """
    registry = Redis.from_url(f"{REDIS_URL}/0")
    indexes = random.sample(range(1, 16), 15)
    try:
        for index in indexes:
            key = f"chapar-test-redis-db:{index}"
            if registry.set(key, str(os.getpid()), nx=True, ex=6 * 3600):
                return index, key
    finally:
        registry.close()
    return indexes[0], None


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """A Redis database number of our own for this run, flushed before and after."""
    index, claim = claim_redis_index()
    print(f"redis test database: {index}")
    url = f"{REDIS_URL}/{index}"
    client = Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
    if claim:
        registry = Redis.from_url(f"{REDIS_URL}/0")
        registry.delete(claim)
        registry.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, which it may flush, stop and restart."""
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def rabbitmq_vhost() -> Iterator[PrivateVhost]:
    """A RabbitMQ virtual host of this test's own (fails if RabbitMQ is not running)."""
    require_rabbitmq()
    vhost = PrivateVhost().create()
    yield vhost
    vhost.delete()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpRecorder]:
    server = SmtpRecorder().start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server: SmtpRecorder) -> Iterator[SmtpRecorder]:
    smtp_server.reset()
    yield smtp_server
    smtp_server.reset()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": tmp_path,
        "secret_key": TEST_SECRET,
        "public_url": "http://chapar.test",
        "from_address": "news@chapar.test",
        "api_key": "test-api-key",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def truncate_all(rt: Runtime) -> None:
    # The installation's keys belong to the database like its schema: the migration made
    # them and every process caches them, so they stay.
    tables = [t for t in Base.metadata.sorted_tables if t.name != "instance_keys"]
    with rt.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                connection.execute(table.delete())


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{backend}_url"))


@contextmanager
def emptied_runtime(tmp_path: Path, **overrides: object) -> Iterator[Runtime]:
    """A Runtime on these settings whose tables are empty before and after, then closed."""
    rt = Runtime.from_settings(make_settings(tmp_path, **overrides))
    truncate_all(rt)
    try:
        yield rt
    finally:
        truncate_all(rt)
        rt.close()


@pytest.fixture
def runtime(database_url: str, tmp_path: Path, smtp_server: SmtpRecorder) -> Iterator[Runtime]:
    """A Runtime on committed tables, emptied after the test (for multi-process tests)."""
    with emptied_runtime(tmp_path, database_url=database_url, smtp_url=smtp_server.url) as rt:
        yield rt


@pytest.fixture
def pg_runtime(tmp_path: Path, postgresql_url: str) -> Iterator[Runtime]:
    """A Runtime on PostgreSQL alone: for races only its concurrent writers can run."""
    with emptied_runtime(tmp_path, database_url=postgresql_url) as rt:
        yield rt


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = runtime.engine.connect()
    transaction = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint",
                 expire_on_commit=False)
    yield db
    db.close()
    transaction.rollback()
    connection.close()
