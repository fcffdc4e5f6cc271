"""Is sending broken for a reason that is not a recipient's? Recorded where every process sees it.

A refused connection, a certificate that fails verification, a refused login or an
unusable DKIM key stop every message alike; the rows only say "deferred" one by one.
Whoever meets such a failure (a worker, the confirmation sender, the pre-send check)
records it here with the time it started; the first message that goes out clears it.
`chapar status` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.db import dialect_insert
from service.delivery.models import SendingHealth

SMTP = "smtp"


@dataclass(frozen=True)
class SendingFailure:
    since: datetime
    error: str
    last_at: datetime


def record_failure(session: Session, error: str, now: datetime) -> None:
    """Sending failed for everybody: keep when it started, and the latest reason."""
    statement = dialect_insert(session, SendingHealth).values(
        name=SMTP, failing_since=now, last_error=error[:2000], last_error_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[SendingHealth.name],
        set_={
            # A failure already on record keeps its start.
            "failing_since": func.coalesce(SendingHealth.failing_since,
                                           statement.excluded.failing_since),
            "last_error": statement.excluded.last_error,
            "last_error_at": statement.excluded.last_error_at,
        },
    ))


def record_success(session: Session) -> None:
    """A message went out: sending works again. Writes nothing while nothing was failing."""
    session.execute(
        update(SendingHealth)
        .where(SendingHealth.name == SMTP, SendingHealth.failing_since.is_not(None))
        .values(failing_since=None)
        .execution_options(synchronize_session=False)
    )


def current_failure(session: Session) -> SendingFailure | None:
    """The failure in force, or None when the last attempt to send worked."""
    row = session.execute(
        select(SendingHealth.failing_since, SendingHealth.last_error, SendingHealth.last_error_at)
        .where(SendingHealth.name == SMTP)
    ).first()
    if row is None or row.failing_since is None:
        return None
    return SendingFailure(row.failing_since, row.last_error or "", row.last_error_at or row.failing_since)
