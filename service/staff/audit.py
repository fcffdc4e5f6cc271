"""The audit log: every state change made by staff, kept in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.staff.models import AuditEntry, StaffAccount


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where: a signed-in account, or the command line."""

    account_id: int | None
    label: str  # the account's address, or "cli"
    client: str = ""

    @classmethod
    def of(cls, account: StaffAccount, client: str) -> Actor:
        return cls(account.id, account.email, client)


CLI = Actor(None, "cli", "cli")


def record(session: Session, actor: Actor, action: str, target: str, now: datetime,
           detail: str = "") -> AuditEntry:
    entry = AuditEntry(at=now, actor_id=actor.account_id, actor=actor.label, action=action,
                       target=target, client=actor.client[:64], detail=detail)
    session.add(entry)
    return entry


def recent(session: Session, limit: int = 50, before_id: int | None = None) -> list[AuditEntry]:
    """The newest entries first; `before_id` pages back through older ones."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query))
