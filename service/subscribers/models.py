"""Subscriber tables: one row per address, its status history and consent."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base


class Status(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


SUPPRESSED = frozenset({Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED})


def new_nonce() -> str:
    """A fresh name for a subscription request (64 random bits, 11 URL-safe characters)."""
    return secrets.token_urlsafe(8)


def status_enum() -> Enum:
    return Enum(Status, name="subscriber_status", values_callable=lambda e: [m.value for m in e],
                native_enum=False, length=16)


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        Index("ix_subscribers_status", "status"),
        # The desk's readers list: newest first, a keyset page on (created_at, id); the
        # source filter walks its own readers in that order; the source list is a loose
        # scan of the same index.
        Index("ix_subscribers_created_at", "created_at", "id"),
        Index("ix_subscribers_consent_source", "consent_source", "created_at", "id"),
        {"sqlite_autoincrement": True},  # ids are in signed links: never reuse one
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[Status] = mapped_column(status_enum())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    complained_at: Mapped[datetime | None]
    # Requested: a confirmation email was promised (at most once a day); mailed: the
    # SMTP server took it. A request with no mailing after a while was lost on the way.
    confirmation_requested_at: Mapped[datetime | None]
    confirmation_mailed_at: Mapped[datetime | None]
    # Mailing: a sender claimed the owed email and is talking to SMTP (SQLite, where
    # no row lock is held across the conversation); cleared when it is done either way.
    confirmation_mailing_at: Mapped[datetime | None]
    soft_bounces: Mapped[int] = mapped_column(default=0)
    # Names the current subscription request, from the moment the address became
    # pending until it is confirmed. Confirm links carry it, so a link mailed for an
    # earlier request (before an unsubscribe) cannot confirm a later one that a
    # stranger made; asking again while pending keeps it, so every link mailed for
    # this request works. NULL only on rows older than the column.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32), default=new_nonce)

    # The consent in force: the request that was confirmed (or, until the first
    # confirmation, the one that created the row). Never rewritten by a request that
    # is not yet confirmed; every request is kept in `consents`.
    consent_source: Mapped[str] = mapped_column(String(200))
    consent_at: Mapped[datetime]
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(300))

    events: Mapped[list[SubscriberEvent]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True,
        order_by="SubscriberEvent.id",
    )
    consents: Mapped[list[ConsentRecord]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ConsentRecord.id",
    )

    @property
    def suppressed(self) -> bool:
        return self.status in SUPPRESSED


# Any part of the address, in any case (search.py): a trigram index on the very expression
# the search compares. PostgreSQL only (pg_trgm); SQLite reads the table.
Index("ix_subscribers_email_trgm", func.lower(Subscriber.email).label("email_lower"),
      postgresql_using="gin", postgresql_ops={"email_lower": "gin_trgm_ops"}).ddl_if(dialect="postgresql")


class SubscriberHistory:
    """A line of one subscriber's history: what happened when, from where; gone on erase."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(200))


class SubscriberEvent(SubscriberHistory, Base):
    """Every change of a subscriber's status, with where it came from."""

    __tablename__ = "subscriber_events"
    # The growth figures count one kind of event over a range of weeks.
    __table_args__ = (Index("ix_subscriber_events_kind_at", "kind", "at"),)

    detail: Mapped[str | None] = mapped_column(Text)

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")


class ConsentRecord(SubscriberHistory, Base):
    """One request to receive the list, or one confirmation of it: appended, never changed.

    kind: subscribe (a form or the API), import, resubscribe (the reader's signed
    link), confirm (the confirmation link), recorded (the consent a row held when
    this history began).
    """

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_kind_at", "kind", "at"),)

    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    nonce: Mapped[str | None] = mapped_column(String(32))  # the request it belongs to

    subscriber: Mapped[Subscriber] = relationship(back_populates="consents")


class Suppression(Base):
    """Addresses that asked to be erased, kept only as a keyed hash.

    The key is the installation's own (instance_keys.SUPPRESSION), not the rotating
    secret: an erasure must outlive every rotation.

    An import or an unconfirmed subscribe must never quietly re-add them; confirming
    a fresh subscription from the address itself lifts the suppression.
    """

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportJob(Base):
    """A CSV file staff uploaded on the desk, and how far its import has come.

    The file itself is kept until the import ends (any worker can run or resume it from
    here), then dropped: it names readers who may later ask to be erased. `processed`
    counts the addresses read so far and is committed with the rows they added, so a
    worker that dies leaves a position the next one resumes from.
    """

    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))  # the account's address, copied
    filename: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]  # bytes uploaded
    source: Mapped[str] = mapped_column(String(200))  # the consent source recorded
    import_as: Mapped[Status] = mapped_column(status_enum())  # confirmed or pending
    content: Mapped[str | None] = mapped_column(Text, deferred=True)
    status: Mapped[ImportStatus] = mapped_column(
        Enum(ImportStatus, name="import_status", values_callable=lambda e: [m.value for m in e],
             native_enum=False, length=16))
    total: Mapped[int] = mapped_column(default=0)  # addresses in the file
    processed: Mapped[int] = mapped_column(default=0)
    added: Mapped[int] = mapped_column(default=0)
    already_present: Mapped[int] = mapped_column(default=0)  # in any state: left as they are
    suppressed: Mapped[int] = mapped_column(default=0)  # erased at their request: skipped
    rejected: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)  # workers that took it up
    error: Mapped[str | None] = mapped_column(Text)  # why it failed: Persian | English

    rejections: Mapped[list[ImportRejection]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ImportRejection.line",
    )

    @property
    def skipped(self) -> int:
        return self.already_present + self.suppressed

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED)


class ImportRejection(Base):
    """One line of an uploaded file that held no usable address, and why."""

    __tablename__ = "import_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"), index=True)
    line: Mapped[int]
    value: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(16))  # service.subscribers.addresses.MESSAGES

    job: Mapped[ImportJob] = relationship(back_populates="rejections")
