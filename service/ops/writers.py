"""Counters and incidents written once, when a unit of work has to be run again.

The sender runs a unit of work again when the database connection drops during
it, commit included: the ledger's writes are conditional and change nothing the
second time, but adding to a counter or appending an incident would count twice
if the first commit had landed and only its reply was lost. Each sending process
numbers its units of work; the one that adds to the counters or the incident log
first moves the process's row in `ops_writers` to its number, in the same
transaction, and adds only if the row was behind.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from service.db import dialect_insert
from service.ops.models import WriterMark

KEEP = timedelta(days=1)  # far beyond how long a sender retries a unit of work


def first_time(session: Session, writer: str, unit: int, now: datetime) -> bool:
    """Record unit number `unit` of `writer`; False if it is already on record.

    Numbers only grow, so a unit's number on record means its transaction committed.
    """
    statement = dialect_insert(session, WriterMark).values(writer=writer, unit=unit, at=now)
    moved = statement.on_conflict_do_update(
        index_elements=[WriterMark.writer],
        set_={"unit": statement.excluded.unit, "at": statement.excluded.at},
        where=WriterMark.unit < statement.excluded.unit,
    ).returning(WriterMark.writer)
    return session.execute(moved).first() is not None


def prune(session: Session, now: datetime) -> int:
    """Forget processes that have written nothing for KEEP (stopped or restarted)."""
    result = session.execute(delete(WriterMark).where(WriterMark.at < now - KEEP))
    return int(result.rowcount)  # type: ignore[attr-defined]
