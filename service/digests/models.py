"""Digest issues, their article snapshots, and the weekly schedule slots."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base

# PostgreSQL: held by whatever builds, until it commits (`build.hold_build_lock`), so
# builds run one after another: each sees the drafts and numbers of the one before.
BUILD_LOCK = 7163082342631892592


class IssueStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"  # an editor asked for review; a chief editor approves or sends it back
    APPROVED = "approved"  # sent at its weekly slot, or now
    SCHEDULED = "scheduled"  # approved and sent at `scheduled_for`
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SENT = "sent"  # finished: no delivery row is pending


class Issue(Base):
    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    intro: Mapped[str | None] = mapped_column(Text)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    status: Mapped[IssueStatus] = mapped_column(
        Enum(IssueStatus, name="issue_status", values_callable=lambda e: [m.value for m in e],
             native_enum=False, length=16)
    )
    # Rendered once per issue with CSS inlined; per-recipient parts are placeholders.
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    send_started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    scheduled_for: Mapped[datetime | None]  # when a scheduled issue goes
    # The highest subscriber id whose ledger row a first claim has handed to a worker
    # (`ledger.claim_batch`): the next claim starts after it. None: none yet.
    claimed_through: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    # The editor's hand (service/digests/editing.py): the lead story is an article id, so a
    # rebuild keeps it while the article is still in the issue.
    lead_article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"))
    group_by_section: Mapped[bool] = mapped_column(default=False, server_default=false())
    # An edited subject or preheader survives a rebuild; an untouched one follows the articles.
    subject_by_editor: Mapped[bool] = mapped_column(default=False, server_default=false())
    preheader_by_editor: Mapped[bool] = mapped_column(default=False, server_default=false())

    articles: Mapped[list[IssueArticle]] = relationship(
        back_populates="issue", cascade="all, delete-orphan", order_by="IssueArticle.position"
    )

    @staticmethod
    def audit_target_of(number: int) -> str:
        """How the audit log names an issue: every entry about it, wherever made, shares it."""
        return f"issue:{number}"


class IssueArticle(Base):
    """An article as it was when the issue was built; later edits don't change it."""

    __tablename__ = "issue_articles"
    __table_args__ = (UniqueConstraint("issue_id", "article_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    position: Mapped[int]
    title: Mapped[str] = mapped_column(String(500))
    summary_html: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    section: Mapped[str | None] = mapped_column(String(200))
    author: Mapped[str | None] = mapped_column(String(200))
    published_at: Mapped[datetime]

    issue: Mapped[Issue] = relationship(back_populates="articles")


class ScheduleSlot(Base):
    """One row per weekly slot: the unique key is what makes two beats build one issue."""

    __tablename__ = "schedule_slots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slot_at: Mapped[datetime] = mapped_column(unique=True)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))
    # drafted (built ahead, waiting) | skipped | held (not approved) | blocked (checks) |
    # refused (sending cannot work) | scheduled (goes at its own time) | sent | built
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class WeeklySchedule(Base):
    """The weekly slot as staff set it on the desk; without a row the settings' values hold."""

    __tablename__ = "weekly_schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # one row: id 1
    weekday: Mapped[int]  # Python's: Monday is 0
    hour: Mapped[int]
    minute: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(320))


class LinkCheck(Base):
    """Whether one link of an issue answered when a worker last fetched it."""

    __tablename__ = "issue_link_checks"
    __table_args__ = (UniqueConstraint("issue_id", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    state: Mapped[str] = mapped_column(String(16))  # pending | ok | broken | refused
    detail: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime]
    checked_at: Mapped[datetime | None]


class ChecksOverride(Base):
    """An admin let an issue go despite its blockers; valid only for exactly what was checked."""

    __tablename__ = "issue_check_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # the issue's bytes and its blockers
    actor: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class Click(Base):
    """One follow of a tracked article link (service/digests/clicks.py).

    Per article, not per reader: `subscriber_id` is set only in the per-reader mode.
    `filtered` says why the click is not counted as a person's (head | scanner |
    too_soon | burst), None when it likely is. No address, user agent or send time is
    kept.
    """

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_issue_article", "issue_id", "article_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True)
    at: Mapped[datetime]
    filtered: Mapped[str | None] = mapped_column(String(16))
