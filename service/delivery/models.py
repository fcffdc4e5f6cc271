"""The deliveries ledger: one row per (issue, subscriber), the truth about who got what."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker; DATA may be in flight
    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or connection lost before "."; retried at next_attempt_at
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # connection lost after "." or worker died mid-DATA
    CANCELLED = "cancelled"


# The rows `ix_deliveries_due_again` holds: a row has a `next_attempt_at` exactly while
# it waits for a retry (queued or deferred); marking it `sending`, and every end, clears
# it. The predicate names no other column: no index of the ledger names `status`, so the
# two updates of a message sent at its first try (`sending`, `sent`) are HOT (heap-only:
# no index entry written), given room on the row's page (LEDGER_FILLFACTOR).
DUE_AGAIN = "next_attempt_at IS NOT NULL"
# Percent of each new ledger page filled by the fan-out; the rest is for the updated rows.
LEDGER_FILLFACTOR = 50

PENDING = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED})

BigId = BigInteger().with_variant(Integer, "sqlite")

# PostgreSQL: held shared by a fan-out until it commits (`ledger.start_send`), and
# exclusively by whatever deletes a subscriber (`store.erase`, and the trigger of
# migration 0023, which writes the number out, that sets their ledger rows to NULL).
# Without foreign keys nothing else would stop a fan-out that read the subscriber
# before the delete from committing rows that name nobody.
FAN_OUT_LOCK = 7163082342631892591


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        # Also an issue's rows in subscriber order: the claims' cursor, and every look
        # at an issue's rows in some status (how many are in each: `DeliveryCount`).
        UniqueConstraint("issue_id", "subscriber_id"),
        # Rows due again, by when: deferred ones, and queued ones given back by a worker
        # or the recovery (`ledger.claim_batch`'s second source); giving up on deferred
        # rows, a domain's resume. Partial: a row sent at its first try (fan-out,
        # `sending`, `sent`) never has `next_attempt_at` and adds no entry here.
        Index("ix_deliveries_due_again", "next_attempt_at",
              postgresql_where=text(DUE_AGAIN), sqlite_where=text(DUE_AGAIN)),
        # One reader's issues (the desk's reader page) and their erasure.
        Index("ix_deliveries_subscriber_id", "subscriber_id"),
        {"postgresql_with": {"fillfactor": LEDGER_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Deleting the issue deletes its rows; deleting a subscriber sets theirs to NULL, so an
    # erased reader leaves an anonymous record that a message went out. On PostgreSQL
    # triggers do it (migration 0023: the foreign keys' per-row checks took half the
    # fan-out's time); SQLite keeps the foreign keys with these actions.
    issue_id: Mapped[int]
    subscriber_id: Mapped[int | None]
    domain: Mapped[str] = mapped_column(String(255))
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="delivery_status",
             values_callable=lambda e: [m.value for m in e], native_enum=False, length=16)
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # The claimant that marked the row `sending`, or took it again when it was due again
    # (`ledger.claim_batch`); a row taken fresh carries no name until it is marked.
    worker: Mapped[str | None] = mapped_column(String(200))
    last_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # After this instant a deferred row fails instead of being retried again.
    give_up_at: Mapped[datetime | None]
    # How many times this row's outcome was unknown (worker died or the connection
    # dropped after "."): every possible duplicate at the reader is counted here.
    uncertain_count: Mapped[int] = mapped_column(default=0, server_default="0")


class DeliveryClaim(Base):
    """A batch of ledger rows one worker holds, and the lease it holds them on.

    One row per claim (a worker's batch, up to CHAPAR_SEND_BATCH_SIZE rows), not a
    lease on every row: renewing it writes one small row, not every row of the batch,
    and no index of the ledger names the lease. `ids` lists the rows the claim took;
    while its lease has not run out it holds those of them still fresh or carrying
    its name (`ledger.mine`), and the recovery finds them by key when it has. A row
    is `sending` only under a claim (`ledger.mark_sending` checks the claim and
    extends its lease in the same statement), so every row whose worker died is
    found through its claim.
    """

    __tablename__ = "delivery_claims"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    worker: Mapped[str] = mapped_column(String(200), unique=True)
    lease_until: Mapped[datetime]
    ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger).with_variant(JSON(), "sqlite"))
    created_at: Mapped[datetime]


class DeliveryCount(Base):
    """How many ledger rows of an issue are in a status, and their possible duplicates.

    Written only by triggers on `deliveries` (migration 0021), in the statement that
    changes the rows (inserted, updated or deleted), so it is as true as the ledger in
    every snapshot. An issue's count for a status is the sum over its slots: on
    PostgreSQL each database backend adds to a slot of its own (its process id), so
    concurrent sends never wait on one counts row; SQLite has slot 0. Readers:
    `ledger.counted`.
    """

    __tablename__ = "delivery_counts"

    # No foreign key: its check would lock the issue's row from inside a worker's chunk
    # statement (migration 0021 says why that could deadlock).
    issue_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
    duplicates: Mapped[int] = mapped_column(BigInteger)  # sum of the rows' uncertain_count


class Bounce(Base):
    """A bounce report that arrived after the send, matched to its delivery by VERP."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime]
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # hard | soft | unknown
    recipient: Mapped[str | None] = mapped_column(String(320))
    detail: Mapped[str | None] = mapped_column(Text)


class SendingHealth(Base):
    """Whether Chapar can send at all: a failure that is not a recipient's, until a send works.

    One row (name "smtp"). Workers, the confirmation sender and the pre-send check
    write it; `chapar status` in another process reads it.
    """

    __tablename__ = "sending_health"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    failing_since: Mapped[datetime | None]  # None: the last send worked
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
