"""The deliveries ledger: fan-out, atomic claims and recorded outcomes.

The SQL database is the truth about who got what; the broker only rings the bell.
Every function here takes a Session and never commits: the task or command that
calls it owns the transaction, and enqueues work only after its commit.
"""

from __future__ import annotations

from collections import Counter as CounterType
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.db import UtcDateTime, is_sqlite
from service.delivery.message import Recipient
from service.delivery.models import PENDING, Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.subscribers.models import Status, Subscriber, SubscriberEvent

CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Outcome:
    """What the SMTP server said about one row."""

    delivery_id: int
    status: DeliveryStatus  # sent | deferred | failed | uncertain | queued (not tried)
    code: int | None = None
    error: str | None = None
    suppress: bool = False  # the mailbox does not exist: mark the subscriber bounced
    retry_at: datetime | None = None  # for deferrals that must wait longer (domain paused)
    # False: the row was never marked `sending` (its domain was paused before its chunk).
    attempted: bool = True


_ID_ARRAY = postgresql.ARRAY(BigInteger())


_TEXT_ARRAY = postgresql.ARRAY(String())


def among(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL `column = ANY(:ids)`, one array parameter.

    An IN list is rendered with one bound parameter per id on every execution (the
    statement's text, and so PostgreSQL's prepared statement, differs with each
    length): for a 30-row chunk that was most of the CPU a send spends in the
    database layer. One array keeps the text fixed, so it is compiled once and
    prepared once per connection. SQLite has no arrays.
    """
    if is_sqlite(session):
        return column.in_(list(ids))  # type: ignore[no-any-return]
    return column == any_(bindparam(None, list(ids), type_=_ID_ARRAY))  # type: ignore[no-any-return]


def in_status(session: Session, statuses: Iterable[DeliveryStatus]) -> ColumnElement[bool]:
    """`status IN (...)` for the statements a send runs per chunk: one array, as `among`."""
    values = [status.value for status in statuses]
    if is_sqlite(session):
        return Delivery.status.in_(values)
    return Delivery.status == any_(bindparam(None, values, type_=_TEXT_ARRAY))


def database_now(session: Session) -> datetime:
    """The database's clock: every lease is written and compared on it.

    Workers, the sweeper and beat may run on hosts whose clocks disagree; a lease
    written with one host's clock and judged expired by another's could let two
    workers hold a row. On PostgreSQL this is `now()`, the start of the current
    transaction (read at the start of the transaction, so every later statement
    of it agrees). SQLite lives on the one host every process runs on: its clock is
    the host's.
    """
    if is_sqlite(session):
        session.connection()  # BEGIN IMMEDIATE first: the time after any wait for the lock
        return datetime.now(UTC)
    found: datetime | None = session.scalar(select(func.now()))
    assert found is not None
    return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)


# Every state before the send: the automatic weekly send starts whatever waits at its slot.
STARTABLE = (IssueStatus.DRAFT, IssueStatus.IN_REVIEW, IssueStatus.APPROVED, IssueStatus.SCHEDULED)


def start_send(session: Session, issue_id: int, now: datetime, retry_for: timedelta) -> int | None:
    """Move an unsent issue to sending and write one ledger row per confirmed subscriber.

    One INSERT ... SELECT, so a million rows take seconds, not a Python loop. Returns
    the number of rows written, or None when the issue was not waiting to be sent
    (already started: calling this twice sends nothing twice). Who may start which
    issue is service/digests/review.py's to decide.
    """
    started = session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status.in_(STARTABLE))
        .values(status=IssueStatus.SENDING, send_started_at=now, finished_at=None,
                scheduled_for=None)
        .execution_options(synchronize_session=False)
    )
    if not started.rowcount:  # type: ignore[attr-defined]
        return None
    email = Subscriber.email
    if is_sqlite(session):
        domain = func.lower(func.substr(email, func.instr(email, "@") + 1))
        insert_fn = sqlite.insert
    else:
        domain = func.lower(func.split_part(email, "@", 2))
        insert_fn = postgresql.insert  # type: ignore[assignment]
    rows = select(
        literal(issue_id, Integer()), Subscriber.id, domain,
        literal(DeliveryStatus.QUEUED.value, String()), literal(0, Integer()),
        literal(0, Integer()), literal(now, UtcDateTime()), literal(now, UtcDateTime()),
        literal(now + retry_for, UtcDateTime()),
    ).where(Subscriber.status == Status.CONFIRMED)
    statement = insert_fn(Delivery).from_select(
        ["issue_id", "subscriber_id", "domain", "status", "attempts", "uncertain_count",
         "created_at", "updated_at", "give_up_at"],
        rows,
    ).on_conflict_do_nothing()
    session.execute(statement)
    session.expire_all()
    # rowcount of INSERT ... SELECT is not reported by every driver: count the rows.
    return int(session.scalar(select(func.count()).where(Delivery.issue_id == issue_id)) or 0)


def claim_batch(session: Session, issue_id: int, worker: str, now: datetime, size: int,
                lease: timedelta) -> list[Recipient]:
    """Take up to `size` due rows of a sending issue for `worker`, atomically.

    FOR UPDATE SKIP LOCKED on PostgreSQL lets concurrent workers take disjoint
    batches without waiting (`claim_in_one_statement`); on SQLite the transaction
    began with BEGIN IMMEDIATE, so the select-then-update below cannot interleave
    with another writer. A claim is a lease: rows whose lease ran out can be claimed
    again.
    """
    if not is_sqlite(session):
        return claim_in_one_statement(session.connection(), issue_id, worker, now, size, lease)
    status = session.scalar(select(Issue.status).where(Issue.id == issue_id))
    if status is not IssueStatus.SENDING:
        return []
    due = (
        select(Delivery.id)
        .where(
            Delivery.issue_id == issue_id,
            in_status(session, CLAIMABLE),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        )
        # No ORDER BY: which due rows come first does not matter, and ordering by id
        # makes PostgreSQL sort every queued row, or walk the key past every row
        # already sent, on each claim (617 ms and growing at a million rows).
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    session.execute(
        update(Delivery).where(among(session, Delivery.id, ids))
        .values(lease_until=now + lease, worker=worker, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    found = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Subscriber.email, Delivery.domain,
               Subscriber.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
        .where(among(session, Delivery.id, ids))
        .order_by(Delivery.id)
    ).all()
    recipients = []
    gone = []
    for delivery_id, subscriber_id, email, domain, subscriber_status in found:
        # Unsubscribed, bounced or erased since the fan-out: never mail them now.
        if subscriber_id is None or subscriber_status is not Status.CONFIRMED:
            gone.append(delivery_id)
        else:
            recipients.append(Recipient(delivery_id, subscriber_id, email, domain))
    if gone:
        session.execute(
            update(Delivery).where(among(session, Delivery.id, gone))
            .values(status=DeliveryStatus.CANCELLED, lease_until=None, updated_at=now,
                    last_error="subscriber no longer confirmed")
            .execution_options(synchronize_session=False)
        )
    return recipients


# `claim_batch` on PostgreSQL as one statement: the due rows taken (FOR UPDATE SKIP
# LOCKED) and leased, rows whose reader is no longer confirmed cancelled instead, and
# the recipients returned. `now` NULL: the database's clock (`database_now`).
# Every row is reached by key: the readers through a LATERAL lookup that OFFSET 0
# keeps from being flattened, the rows to update through `id = ANY(ARRAY(...))`.
# Written as plain joins, the planner hashed the whole deliveries and subscribers
# tables on every claim while they held a few tens of thousands of rows (18 ms a
# claim at 20,000), since it costs 500 index lookups as if each read the disk.
_CLAIM = """
WITH picked AS (
    SELECT d.id, d.subscriber_id FROM deliveries AS d
    WHERE d.issue_id = %(issue)s AND d.status IN ('queued', 'deferred')
      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= COALESCE(%(now)s::timestamptz, now()))
      AND (d.lease_until IS NULL OR d.lease_until < COALESCE(%(now)s::timestamptz, now()))
      AND EXISTS (SELECT 1 FROM issues AS i WHERE i.id = %(issue)s AND i.status = 'sending')
    LIMIT %(size)s
    FOR UPDATE OF d SKIP LOCKED
), readers AS (
    SELECT p.id, s.email, s.status IS NOT DISTINCT FROM 'confirmed' AS live
    FROM picked AS p LEFT JOIN LATERAL (
        SELECT email, status FROM subscribers WHERE id = p.subscriber_id OFFSET 0
    ) AS s ON true
)
UPDATE deliveries AS d
SET lease_until = CASE WHEN r.live THEN COALESCE(%(now)s::timestamptz, now()) + %(lease)s END,
    worker = %(worker)s, updated_at = COALESCE(%(now)s::timestamptz, now()),
    status = CASE WHEN r.live THEN d.status ELSE 'cancelled' END,
    last_error = CASE WHEN r.live THEN d.last_error ELSE 'subscriber no longer confirmed' END
FROM readers AS r
WHERE d.id = r.id AND d.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING d.id, d.subscriber_id, r.email, d.domain, r.live
"""


def claim_in_one_statement(connection: Connection, issue_id: int, worker: str,
                           now: datetime | None, size: int, lease: timedelta) -> list[Recipient]:
    """`claim_batch` on PostgreSQL in one round trip (autocommit: its own transaction).

    Four statements and a transaction's BEGIN and COMMIT were a round trip each, per
    batch claimed; one statement does what they did, under the same conditions. `now`
    None: the database's clock, as the worker uses it.
    """
    found = connection.exec_driver_sql(_CLAIM, {
        "issue": issue_id, "worker": worker, "now": now, "size": size, "lease": lease,
    }).all()
    return [Recipient(delivery_id, subscriber_id, email, domain)
            for delivery_id, subscriber_id, email, domain, live in sorted(found) if live]


def clock(session: Session, now: datetime | None) -> Any:
    """`now` when given; otherwise the database's clock in SQL (see `database_now`)."""
    if now is not None:
        return now
    if is_sqlite(session):
        return database_now(session)
    return func.now()


def mark_sending(session: Session, ids: Sequence[int], worker: str, now: datetime | None,
                 lease: timedelta) -> set[int]:
    """Mark claimed rows `sending` just before their DATA; returns the ids still ours.

    Only rows this worker still holds (nobody re-claimed them after a lease ran out)
    of an issue still sending (not paused or cancelled meanwhile) change, so two
    workers never send the same row and a pause stops the next chunk. A row this
    worker already marked counts as ours: the transaction that marked it may have
    committed although its reply was lost to a dropped database connection, and
    the worker runs it again (a claimant name is never reused, so nothing else can
    have marked it under this name). `now` None: the database's clock. On PostgreSQL
    this is the marking half of `record_sent_and_mark`, so the worker's one-statement
    chunks and this run the same SQL.
    """
    if not ids:
        return set()
    if not is_sqlite(session):
        return record_sent_and_mark(session.connection(), [], ids, worker, now, lease,
                                    marked_at=now)
    at = clock(session, now)
    sending = select(Issue.id).where(Issue.id == Delivery.issue_id,
                                     Issue.status == IssueStatus.SENDING).exists()
    again = Delivery.status == DeliveryStatus.SENDING
    result = session.execute(
        update(Delivery)
        .where(among(session, Delivery.id, ids), Delivery.worker == worker,
               in_status(session, (*CLAIMABLE, DeliveryStatus.SENDING)), sending)
        .values(status=DeliveryStatus.SENDING,
                attempts=case((again, Delivery.attempts), else_=Delivery.attempts + 1),
                lease_until=at + lease, updated_at=at)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


# The chunk's whole transaction as one statement (PostgreSQL): the previous chunk's
# rows sent, this chunk's rows `sending`. `mark_sending` and the sent branch of
# `record_outcomes`, with the same conditions, in one round trip; see
# `record_sent_and_mark`. Written as SQL because it runs once per chunk and
# SQLAlchemy's statement building and caching would cost more than the statement.
_RECORD_SENT_AND_MARK = """
WITH recorded AS (
    UPDATE deliveries
    SET status = 'sent', sent_at = %(now)s, lease_until = NULL, updated_at = %(now)s,
        last_code = 250, last_error = NULL
    WHERE id = ANY(%(sent)s::bigint[]) AND worker = %(worker)s AND status = 'sending'
)
UPDATE deliveries AS d
SET status = 'sending',
    attempts = CASE WHEN d.status = 'sending' THEN d.attempts ELSE d.attempts + 1 END,
    lease_until = COALESCE(%(marked_at)s::timestamptz, now()) + %(lease)s,
    updated_at = COALESCE(%(marked_at)s::timestamptz, now())
WHERE d.id = ANY(%(ids)s::bigint[]) AND d.worker = %(worker)s
  AND d.status IN ('queued', 'deferred', 'sending')
  AND EXISTS (SELECT 1 FROM issues AS i WHERE i.id = d.issue_id AND i.status = 'sending')
RETURNING d.id
"""


def record_sent_and_mark(connection: Connection, sent: Sequence[int], ids: Sequence[int],
                         worker: str, now: datetime | None, lease: timedelta,
                         marked_at: datetime | None = None) -> set[int]:
    """`record_outcomes` for rows that were all sent, then `mark_sending`, atomically.

    `now` is the sent rows' `sent_at`; the marked rows' lease runs from `marked_at`
    (None: the database's clock, as the worker uses it). PostgreSQL only; on a
    connection in autocommit one statement is its own transaction, so the chunk costs
    one round trip instead of BEGIN, two UPDATEs and COMMIT. The two parts touch
    different rows (the previous chunk's and this one's). A reply lost with the
    connection is run again with the same effect, as each part alone: sent rows are
    no longer `sending`, and rows already marked under this claimant name count as
    ours.
    """
    if connection.dialect.name != "postgresql":
        raise ValueError("record_sent_and_mark runs on PostgreSQL; elsewhere use the two steps")
    found = connection.exec_driver_sql(_RECORD_SENT_AND_MARK, {
        "sent": list(sent), "ids": list(ids), "worker": worker, "now": now, "lease": lease,
        "marked_at": marked_at,
    })
    return set(found.scalars())


def renew_leases(session: Session, ids: Sequence[int], worker: str, now: datetime | None,
                 lease: timedelta) -> int:
    """Extend the lease on the rows of `ids` this worker still holds; returns how many.

    A lease that already ran out is never revived: once `lease_until` has passed,
    the sweeper or another worker may be acting on the row, so only rows whose
    lease still holds at `now` (None: the database's clock, as the worker uses it)
    are extended.
    """
    if not ids:
        return 0
    at = clock(session, now)
    result = session.execute(
        update(Delivery)
        .where(among(session, Delivery.id, ids), Delivery.worker == worker,
               in_status(session, (*CLAIMABLE, DeliveryStatus.SENDING)),
               Delivery.lease_until >= at)
        .values(lease_until=at + lease)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, ids: Iterable[int], worker: str, now: datetime) -> None:
    """Give back claimed rows that were not attempted (paused, stopped, connection down)."""
    ids = list(ids)
    if ids:
        session.execute(
            update(Delivery)
            .where(among(session, Delivery.id, ids), Delivery.worker == worker,
                   in_status(session, CLAIMABLE))
            .values(lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def release_claimant(connection: Session | Connection, issue_id: int, worker: str,
                     now: datetime) -> int:
    """Give back every row of an issue still claimed under `worker`; returns how many.

    For a claim run again because its reply was lost with the connection: the first
    run may have committed, and its rows, leased under this claimant name, would wait
    for the lease to run out, since the claim takes only rows nobody holds. Claimant
    names are never reused, so only that lost claim's rows match. Reads only rows
    that hold a lease (`ix_deliveries_lease_until`), a few batches' worth.
    """
    result = connection.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.worker == worker,
               Delivery.status.in_(list(CLAIMABLE)), Delivery.lease_until.is_not(None))
        .values(lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """The wait before the next attempt: base, doubled per attempt, at most an hour."""
    return min(timedelta(seconds=base_seconds * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


def record_outcomes(session: Session, outcomes: Sequence[Outcome], worker: str, now: datetime,
                    retry_base_seconds: float, resend_uncertain: bool) -> None:
    """Write what happened to each row this worker still holds; sent rows in one statement.

    A row another worker claimed meanwhile (this one's lease ran out on a slow
    batch) is left to that worker: writing over it could set a row it sent back
    to deferred, and the resend would be a duplicate nobody recorded. Only rows
    still `sending` change (rows never attempted: still claimable), so writing the
    same outcomes twice - a commit whose reply a dropped connection lost, run
    again - changes nothing the second time, and outcomes that arrive after the
    sweeper settled the row as uncertain are not written over its record.

    A deferral past the row's give-up time fails it. An uncertain row (the server
    may have delivered it) counts one more possible duplicate and, under the
    at-least-once policy, is retried; otherwise it stays `uncertain` for ops.
    """
    sent = [o.delivery_id for o in outcomes if o.status is DeliveryStatus.SENT]
    if sent:
        session.execute(
            update(Delivery).where(among(session, Delivery.id, sent), Delivery.worker == worker,
                                   Delivery.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.SENT, sent_at=now, lease_until=None, updated_at=now,
                    last_code=250, last_error=None)
            .execution_options(synchronize_session=False)
        )
    for outcome in outcomes:
        if outcome.status is DeliveryStatus.SENT:
            continue
        table = Delivery.__table__
        row = table.c
        values: dict[str, object] = {
            "lease_until": None, "updated_at": now, "last_code": outcome.code,
            "last_error": (outcome.error or "")[:1000] or None,
        }
        if outcome.status is DeliveryStatus.QUEUED:  # never tried: as if never claimed
            values.update(status=DeliveryStatus.QUEUED, attempts=row.attempts - 1, last_code=None,
                          last_error=None)
        elif outcome.status is DeliveryStatus.FAILED:
            values["status"] = DeliveryStatus.FAILED
        elif outcome.status is DeliveryStatus.UNCERTAIN and not resend_uncertain:
            values["status"] = DeliveryStatus.UNCERTAIN
            values["uncertain_count"] = row.uncertain_count + 1
        else:
            retry_at = outcome.retry_at or now + _backoff_sql(session, outcome.delivery_id,
                                                              retry_base_seconds)
            values["status"] = case(
                (row.give_up_at < now, DeliveryStatus.FAILED.value),
                else_=DeliveryStatus.DEFERRED.value,
            )
            values["next_attempt_at"] = retry_at
            if outcome.status is DeliveryStatus.UNCERTAIN:
                values["uncertain_count"] = row.uncertain_count + 1
        held = (row.status == DeliveryStatus.SENDING if outcome.attempted
                else row.status.in_(CLAIMABLE))
        changed = session.execute(
            update(table).where(row.id == outcome.delivery_id,  # type: ignore[arg-type]
                                row.worker == worker, held).values(**values)
        )
        if outcome.suppress and changed.rowcount:  # type: ignore[attr-defined]
            suppress_subscriber(session, outcome.delivery_id, now, outcome.error or "")


def _backoff_sql(session: Session, delivery_id: int, base_seconds: float) -> timedelta:
    attempts = session.scalar(select(Delivery.attempts).where(Delivery.id == delivery_id)) or 1
    return backoff(attempts, base_seconds)


def suppress_subscriber(session: Session, delivery_id: int, now: datetime, reply: str) -> None:
    """The receiving server said the mailbox does not exist: stop mailing it."""
    subscriber_id = session.scalar(select(Delivery.subscriber_id).where(Delivery.id == delivery_id))
    if subscriber_id is None:
        return
    changed = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status == Status.CONFIRMED)
        .values(status=Status.BOUNCED, bounced_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount:  # type: ignore[attr-defined]
        session.add(SubscriberEvent(subscriber_id=subscriber_id, at=now, kind="bounce",
                                    source=f"smtp:delivery:{delivery_id}", detail=reply[:500]))


def finish_if_done(session: Session, issue_id: int, now: datetime) -> bool:
    """Mark a sending issue finished when no row is pending; True if it is finished now."""
    # Lock the issue first: a concurrent retry-failed re-queues rows under this lock,
    # and the check below then runs with a snapshot that sees them (PostgreSQL read
    # committed takes a new one per statement); without it a stale snapshot could
    # finish an issue whose rows were just queued again.
    session.execute(select(Issue.id).where(Issue.id == issue_id).with_for_update())
    pending = select(Delivery.id).where(
        Delivery.issue_id == issue_id, Delivery.status.in_(PENDING)
    ).exists()
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING, ~pending)
        .values(status=IssueStatus.SENT, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def has_due_rows(session: Session, issue_id: int, now: datetime) -> bool:
    """Whether a worker would find something to claim right now."""
    return bool(session.scalar(
        select(
            select(Delivery.id).where(
                Delivery.issue_id == issue_id,
                Delivery.status.in_(CLAIMABLE),
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
            ).exists()
        )
    ))


def expire_leases(session: Session, now: datetime, resend_uncertain: bool) -> int:
    """Rows left `sending` by a worker that died: their outcome is unknown.

    Each becomes one more recorded possible duplicate; under the at-least-once
    policy it is retried at once, otherwise it stays `uncertain`.
    """
    return sum(expire_sending(session, now, resend_uncertain).values())


def expire_sending(session: Session, now: datetime, resend_uncertain: bool) -> CounterType[int]:
    """`expire_leases`, counted per issue (the recovery rings each issue it touched)."""
    stale = and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now)
    values: dict[str, object] = {
        "uncertain_count": Delivery.uncertain_count + 1, "lease_until": None, "updated_at": now,
        "last_error": "worker stopped during the send; outcome unknown",
    }
    if resend_uncertain:
        values.update(status=DeliveryStatus.DEFERRED, next_attempt_at=now)
    else:
        values.update(status=DeliveryStatus.UNCERTAIN)
    result = session.execute(
        update(Delivery).where(stale).values(**values).returning(Delivery.issue_id)
        .execution_options(synchronize_session=False)
    )
    return CounterType(result.scalars())


def return_expired_claims(session: Session, now: datetime) -> CounterType[int]:
    """Claimed rows never marked `sending` whose lease ran out: due again now, per issue.

    Nothing was sent for them, so they are not uncertain. Any worker's claim would
    take them anyway; clearing the lease lets the recovery count them once and ring
    their issue, so a send whose other workers had already run dry carries on.
    """
    result = session.execute(
        update(Delivery)
        .where(Delivery.lease_until.is_not(None), Delivery.lease_until < now,
               Delivery.status.in_(CLAIMABLE))
        .values(lease_until=None, updated_at=now)
        .returning(Delivery.issue_id)
        .execution_options(synchronize_session=False)
    )
    return CounterType(result.scalars())


@dataclass(frozen=True)
class Leases:
    """Rows held by workers right now, by the database's clock."""

    held: int  # claimed or sending, lease still running
    sending: int  # of those, `sending`
    expired: int  # lease ran out, not yet returned to due by the recovery
    oldest_expired_at: datetime | None


def leases(session: Session, now: datetime) -> Leases:
    """What `chapar status` shows about leases (reads only the rows that have one)."""
    running = Delivery.lease_until >= now
    held, sending, expired, oldest = session.execute(
        select(
            func.count().filter(running),
            func.count().filter(running, Delivery.status == DeliveryStatus.SENDING),
            func.count().filter(Delivery.lease_until < now),
            func.min(Delivery.lease_until).filter(Delivery.lease_until < now),
        ).where(Delivery.lease_until.is_not(None),
                Delivery.status.in_((*CLAIMABLE, DeliveryStatus.SENDING)))
    ).one()
    return Leases(int(held or 0), int(sending or 0), int(expired or 0), oldest)


def fail_expired(session: Session, now: datetime) -> int:
    """Deferred rows past their give-up time fail; nobody retries them any more."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.DEFERRED, Delivery.give_up_at < now,
               or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
        .values(status=DeliveryStatus.FAILED, updated_at=now, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Rows per status for one issue, plus `possible_duplicates` (uncertain outcomes)."""
    found = {status.value: 0 for status in DeliveryStatus}
    for status, number in session.execute(
        select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ):
        found[DeliveryStatus(status).value] = number
    found["possible_duplicates"] = int(session.scalar(
        select(func.coalesce(func.sum(Delivery.uncertain_count), 0))
        .where(Delivery.issue_id == issue_id)
    ) or 0)
    return found
