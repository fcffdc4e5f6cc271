"""When each periodic job last ran, and since when it has been failing.

Beat's schedule tick, the delivery sweeper, the feed refresh and the bounce mailbox
poll each leave a mark as they finish; the console, `chapar status`, /metrics and the
alerts read them. Alerts sent are marks too (`alert:<condition>`), so "at most once
an hour" holds across processes and restarts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import dialect_insert
from service.ops.models import Mark

BEAT_TICK = "beat_tick"
SWEEPER = "sweeper"
FEED_REFRESH = "feed_refresh"
BOUNCE_POLL = "bounce_poll"


def record(session: Session, name: str, now: datetime, error: str | None = None) -> None:
    """A run finished at `now`; with an error, the failing run keeps its start."""
    statement = dialect_insert(session, Mark).values(
        name=name, last_at=now, last_error=error[:2000] if error else None,
        failing_since=now if error else None)
    failing_since = (func.coalesce(Mark.failing_since, statement.excluded.failing_since)
                     if error else None)
    session.execute(statement.on_conflict_do_update(
        index_elements=[Mark.name],
        set_={"last_at": statement.excluded.last_at, "last_error": statement.excluded.last_error,
              "failing_since": failing_since},
    ))


def read(session: Session) -> dict[str, Mark]:
    """Every mark by name (detached copies, safe after the session closes)."""
    found = {m.name: m for m in session.scalars(select(Mark))}
    for mark in found.values():
        session.expunge(mark)
    return found
