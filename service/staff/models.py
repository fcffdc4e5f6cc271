"""Staff tables: accounts, their server-side sessions, and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(32))
    # None until the person sets a password through the invitation link.
    password_hash: Mapped[str | None] = mapped_column(String(300))
    password_changed_at: Mapped[datetime | None]
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The 30-second step of the last code accepted: a code is good once (RFC 6238 5.2).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    # Consecutive failed logins; reaching the limit locks the account until locked_until.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]

    sessions: Mapped[list[StaffSession]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True,
    )

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def display_name(self) -> str:
        return self.name or self.email


class StaffSession(Base):
    """A signed-in browser; the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_account_id", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_accounts.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(String(40))
    client: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")

    account: Mapped[StaffAccount] = relationship(back_populates="sessions")


class AuditEntry(Base):
    """One state change by staff: who, what, on which object, when, from which client."""

    __tablename__ = "staff_audit"
    __table_args__ = (Index("ix_staff_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    # The actor's address is copied so an entry still reads right if the account changes.
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))  # an address, or "cli"
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(200), default="")  # e.g. "staff:3"
    client: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
