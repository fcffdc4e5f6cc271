"""Engine and session factories; the caller of a unit of work owns its transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web process read while a worker writes; the busy timeout makes
    # concurrent writers wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# What a database that cannot be reached raises: refused or dropped connections and
# timeouts (OperationalError; InterfaceError when the driver's connection is already
# closed), a pre-ping that could not reconnect, and a pool whose connections are all
# busy past its timeout. Pages answer these with 503, tasks wait for the next tick.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, DisconnectionError,
                                            PoolTimeout)
DEFAULT_CONNECT_TIMEOUT = 2  # seconds; libpq's least


# SQLite raises OperationalError for a missing table as for a locked file: only these are
# a database that cannot answer now; a missing table is a schema to migrate (a 500, not a 503).
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o")


def unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached (or is too busy to answer now)."""
    if not isinstance(exc, UNAVAILABLE):
        return False
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):
        return any(words in str(orig).lower() for words in _SQLITE_UNAVAILABLE)
    return True


def where(url: str) -> str:
    """host:port of a database URL (the file for SQLite), never its user or password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def make_engine(url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT, **kwargs: Any) -> Engine:
    """Create an engine with the per-backend settings Chapar relies on.

    On PostgreSQL a connection attempt gives up after `connect_timeout` seconds, so a
    database that is down (or a host that swallows packets) turns into a 503 or a
    skipped tick quickly instead of a request hanging; a ping at checkout of a connection
    that sat idle finds one the server dropped and replaces it, so the pool recovers by
    itself (`_ping_when_idle`).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locking; take the write lock at BEGIN so
        # a claim (select-then-update) cannot interleave with another writer.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    if url.startswith("postgresql"):
        # TCP keepalives and a user timeout turn a half-open connection (a host that
        # vanished) into an error within about 30 s instead of the kernel's 15 minutes.
        connect_args = {"connect_timeout": max(2, connect_timeout), "keepalives": 1,
                        "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                        "tcp_user_timeout": 30_000, **kwargs.pop("connect_args", {})}
        # READ COMMITTED whatever the database's default_transaction_isolation: the
        # claims (SKIP LOCKED, the cursor) and the fan-out lock against erasures
        # (delivery.models.FAN_OUT_LOCK) count on each statement seeing what committed
        # before it began.
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        return _ping_when_idle(create_engine(url, connect_args=connect_args, **kwargs))
    return _ping_when_idle(create_engine(url, **kwargs))


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> Engine:
    """Ping a pooled connection at checkout only when it sat idle, then replace a dead one.

    `pool_pre_ping` pings at every checkout: one more round trip per transaction,
    which for a worker recording a 30-message chunk in one statement doubled the
    database's work. A connection checked in less than a second ago was alive a
    second ago; if the server dropped it since, the statement fails, SQLAlchemy
    invalidates the pool, and the caller's retry (or the next request) reconnects.
    Raising DisconnectionError makes the pool discard the connection and try another
    (SQLAlchemy's documented custom pessimistic disconnect handling).
    """

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            if not engine.dialect.do_ping(dbapi_connection):
                raise DisconnectionError("ping failed")
        except DisconnectionError:
            raise
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def dialect_insert(session: Session, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the session's dialect, for its ON CONFLICT clauses (the same on both)."""
    return sqlite.insert(entity) if is_sqlite(session) else postgresql.insert(entity)
