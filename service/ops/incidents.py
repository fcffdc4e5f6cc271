"""The incident log: what went wrong and when, kept in the database so a restart loses nothing.

Written where the thing happens (a 421 pause by the worker that got it, a give-up by
the sweeper, a lost worker by the watcher, a refused send by the pre-send check, a
database outage by the watcher once the database is back: see outages.py) and
pruned after CHAPAR_OPS_INCIDENT_RETENTION_DAYS.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.ops.models import Incident

DOMAIN_PAUSED = "domain-paused"  # a receiving domain answered 421
CONNECTION_FAILED = "connection-failed"  # the SMTP relay could not be reached or refused us
GAVE_UP = "gave-up"  # deferred rows past their give-up time failed
WORKER_LOST = "worker-lost"  # a worker stopped reporting without shutting down
LEASES_SWEPT = "leases-swept"  # rows a dead worker left `sending` became uncertain
SEND_BLOCKED = "send-blocked"  # the pre-send check refused to start a send
ALERT_SENT = "alert-sent"  # ops were emailed about a condition
DATABASE_UNREACHABLE = "database.unreachable"  # written when it is back: from when, how long

LABELS = {
    DOMAIN_PAUSED: "دامنه با ۴۲۱ کند شد",
    CONNECTION_FAILED: "اتصال به سرور SMTP نشد",
    GAVE_UP: "ارسال‌هایی که کنار گذاشته شدند",
    WORKER_LOST: "کارگر از دست رفت",
    LEASES_SWEPT: "ردیف‌های نیمه‌کاره جمع شدند",
    SEND_BLOCKED: "بررسی پیش از ارسال، ارسال را نگه داشت",
    ALERT_SENT: "هشدار برای گردانندگان فرستاده شد",
    DATABASE_UNREACHABLE: "پایگاه داده در دسترس نبود",
}


def record(session: Session, kind: str, now: datetime, detail: str = "", *, subject: str = "",
           issue_id: int | None = None) -> None:
    session.add(Incident(at=now, kind=kind, subject=subject[:320], issue_id=issue_id,
                         detail=detail[:4000]))


def recent(session: Session, limit: int = 30) -> list[Incident]:
    """The newest first (detached)."""
    rows = list(session.scalars(select(Incident).order_by(Incident.id.desc()).limit(limit)))
    for row in rows:
        session.expunge(row)
    return rows


def prune(session: Session, now: datetime, keep_days: float) -> int:
    """Forget incidents older than the retention; returns how many."""
    result = session.execute(delete(Incident).where(Incident.at < now - timedelta(days=keep_days)))
    return int(result.rowcount)  # type: ignore[attr-defined]
