"""Server-side desk sessions: revocable rows, an idle timeout and an absolute lifetime."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.settings import Settings
from service.staff import audit
from service.staff.audit import Actor
from service.staff.models import StaffAccount, StaffSession


@dataclass(frozen=True)
class Lifetime:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Lifetime:
        return cls(timedelta(minutes=settings.staff_session_idle_minutes),
                   timedelta(hours=settings.staff_session_max_hours))


# Writing last_seen_at on every request would make each page view a write; a minute's
# precision is plenty for an idle timeout measured in tens of minutes.
TOUCH_EVERY = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(session: Session, account: StaffAccount, now: datetime, client: str = "",
          user_agent: str = "") -> tuple[str, StaffSession]:
    """A new session; returns the cookie token (kept nowhere else) and the row."""
    token = secrets.token_urlsafe(32)
    row = StaffSession(token_hash=token_hash(token), account_id=account.id,
                       csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
                       client=client[:64], user_agent=user_agent[:300])
    session.add(row)
    session.flush()
    return token, row


def expired(row: StaffSession, now: datetime, lifetime: Lifetime) -> str | None:
    """Why the session is over, or None while it is live."""
    if row.ended_at is not None:
        return row.ended_reason or "ended"
    if now - row.created_at >= lifetime.absolute:
        return "absolute lifetime"
    if now - row.last_seen_at >= lifetime.idle:
        return "idle"
    return None


def resume(session: Session, token: str, now: datetime, lifetime: Lifetime) -> StaffSession | None:
    """The live session for a cookie token, marked as seen; None if unknown, over or disabled."""
    if not token:
        return None
    row = session.scalars(
        select(StaffSession).where(StaffSession.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        return None
    reason = expired(row, now, lifetime)
    if reason is None and not row.account.active:
        reason = "account disabled"
    if reason is not None:
        if row.ended_at is None:
            end(row, now, reason)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def end(row: StaffSession, now: datetime, reason: str) -> None:
    if row.ended_at is None:
        row.ended_at = now
        row.ended_reason = reason[:40]


def end_all(session: Session, account: StaffAccount, now: datetime, reason: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.account_id == account.id, StaffSession.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason[:40])
        .execution_options(synchronize_session="fetch")
    )


def live(session: Session, account: StaffAccount, now: datetime,
         lifetime: Lifetime) -> list[StaffSession]:
    """The account's sessions that are still live, newest first."""
    rows = session.scalars(
        select(StaffSession)
        .where(StaffSession.account_id == account.id, StaffSession.ended_at.is_(None))
        .order_by(StaffSession.id.desc())
    )
    return [row for row in rows if expired(row, now, lifetime) is None]


def revoke(session: Session, actor: Actor, account: StaffAccount, session_id: int, now: datetime) -> bool:
    """End one of the account's own sessions; False if it is not theirs or already over."""
    row = session.get(StaffSession, session_id)
    if row is None or row.account_id != account.id or row.ended_at is not None:
        return False
    end(row, now, "revoked")
    audit.record(session, actor, "session.revoke", f"session:{row.id}", now)
    return True
