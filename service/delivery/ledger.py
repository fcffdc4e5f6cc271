"""The deliveries ledger: fan-out, atomic claims and recorded outcomes.

The SQL database is the truth about who got what; the broker only rings the bell.
Every function here takes a Session and never commits: the task or command that
calls it owns the transaction, and enqueues work only after its commit.
"""

from __future__ import annotations

import operator
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
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.db import UtcDateTime, is_sqlite
from service.delivery.message import Recipient
from service.delivery.models import (
    FAN_OUT_LOCK,
    PENDING,
    Delivery,
    DeliveryClaim,
    DeliveryCount,
    DeliveryStatus,
)
from service.digests.models import Issue, IssueStatus
from service.subscribers.models import Status, Subscriber, SubscriberEvent

CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
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
                scheduled_for=None, claimed_through=None)
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
        # Before the INSERT takes its snapshot: a subscriber deleted from here to the
        # commit has their rows set to NULL after it (see FAN_OUT_LOCK).
        session.execute(select(func.pg_advisory_xact_lock_shared(FAN_OUT_LOCK)))
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


def holds(now: Any) -> ColumnElement[bool]:
    """A claim whose lease has not run out by `now` names the row's worker."""
    return select(DeliveryClaim.id).where(DeliveryClaim.worker == Delivery.worker,
                                          DeliveryClaim.lease_until >= now).exists()


def unclaimed(now: Any) -> ColumnElement[bool]:
    """No live claim's name on the row at `now`: none, or its claim's lease ran out (or ended).

    A fresh row inside a live claim carries no name either: the issue's cursor, not
    this test, keeps other claims from it (`claim_batch`).
    """
    return or_(Delivery.worker.is_(None), ~holds(now))


def mine(worker: str) -> ColumnElement[bool]:
    """Of the rows of `worker`'s own claim (by id): those it holds.

    A row taken fresh carries no name and no `next_attempt_at` until it is marked
    `sending`: the claim's ids and the issue's cursor are what make it this
    worker's. A row that carries another name was taken from it (its lease ran
    out), and one with no name but a `next_attempt_at` was given back.
    """
    return or_(Delivery.worker == worker,
               and_(Delivery.worker.is_(None), Delivery.next_attempt_at.is_(None)))


def _untouched() -> tuple[ColumnElement[bool], ...]:
    """Rows as the fan-out wrote them: queued, no name, never due again."""
    return (Delivery.status == DeliveryStatus.QUEUED, Delivery.worker.is_(None),
            Delivery.next_attempt_at.is_(None))


def _after_cursor(issue_id: int) -> tuple[ColumnElement[bool], ...]:
    """The issue's rows after its cursor, in the unique index's order (see `_CLAIM`'s `fresh`)."""
    cursor = select(func.coalesce(Issue.claimed_through, -1)).where(Issue.id == issue_id)
    key = tuple_(Delivery.issue_id, Delivery.subscriber_id)
    return (key > tuple_(literal(issue_id), cursor.scalar_subquery()),
            key < tuple_(literal(issue_id + 1), literal(0)))


def _fresh(issue_id: int) -> tuple[ColumnElement[bool], ...]:
    """Rows no claim has taken yet: after the issue's cursor, as the fan-out wrote them."""
    return (*_after_cursor(issue_id), *_untouched())


def deferred() -> tuple[ColumnElement[bool], ...]:
    """Deferred rows, through `ix_deliveries_due_again` (every deferred row has a next attempt)."""
    return (Delivery.status == DeliveryStatus.DEFERRED, Delivery.next_attempt_at.is_not(None))


def _due_again(session: Session, issue_id: int, now: Any) -> tuple[ColumnElement[bool], ...]:
    """Rows taken before and due again now (`ix_deliveries_due_again`), nobody holding them."""
    return (Delivery.issue_id == issue_id, in_status(session, CLAIMABLE),
            Delivery.next_attempt_at.is_not(None), Delivery.next_attempt_at <= now,
            unclaimed(now))


def claim_batch(session: Session, issue_id: int, worker: str, now: datetime, size: int,
                lease: timedelta) -> list[Recipient]:
    """Take up to `size` due rows of a sending issue for `worker`, atomically.

    Two sources. Rows due again (deferred, or given back by a worker or the
    recovery: they have a `next_attempt_at`) come first, and carry the claimant's
    name from then on. Then fresh rows, taken in subscriber order after the issue's
    cursor (`issues.claimed_through`), which the claim advances past them: they are
    not written at all, so a message sent at its first try costs the ledger two row
    versions (`sending`, `sent`), not three. Rows whose reader is no longer confirmed
    are cancelled instead. The claim itself, its lease and the ids it took, is one
    `DeliveryClaim` row; rows whose claim's lease ran out can be claimed again.

    On PostgreSQL this is one statement (`claim_in_one_statement`): the issue's row
    lock serialises the cursor, and FOR UPDATE SKIP LOCKED keeps concurrent claims
    of rows due again disjoint. On SQLite the transaction began with BEGIN
    IMMEDIATE, so the steps below cannot interleave with another writer.
    """
    if not is_sqlite(session):
        return claim_in_one_statement(session.connection(), issue_id, worker, now, size, lease)
    issue = session.get(Issue, issue_id, populate_existing=True)
    if issue is None or issue.status is not IssueStatus.SENDING:
        return []
    # No ORDER BY for the rows due again: which come first does not matter.
    again = list(session.scalars(select(Delivery.id).where(*_due_again(session, issue_id, now))
                                 .limit(size)))
    fresh = session.execute(
        select(Delivery.id, Delivery.subscriber_id)
        .where(*_fresh(issue_id))
        .order_by(Delivery.issue_id, Delivery.subscriber_id).limit(size - len(again))
    ).all() if len(again) < size else []
    if fresh:
        issue.claimed_through = max(subscriber_id or 0 for _, subscriber_id in fresh)
    ids = again + [delivery_id for delivery_id, _ in fresh]
    if not ids:
        return []
    if again:
        session.execute(
            update(Delivery).where(among(session, Delivery.id, again))
            .values(worker=worker, updated_at=now)
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
            .values(status=DeliveryStatus.CANCELLED, worker=worker, updated_at=now,
                    next_attempt_at=None, last_error="subscriber no longer confirmed")
            .execution_options(synchronize_session=False)
        )
    if recipients:
        taken = [r.delivery_id for r in recipients]
        claim = session.scalar(select(DeliveryClaim).where(DeliveryClaim.worker == worker))
        if claim is None:  # see `_CLAIM`'s `lease`: a name run again keeps its claim
            session.add(DeliveryClaim(issue_id=issue_id, worker=worker, lease_until=now + lease,
                                      ids=taken, created_at=now))
        else:
            claim.lease_until, claim.ids = now + lease, [*claim.ids, *taken]
    session.flush()
    return recipients


# `claim_batch` on PostgreSQL as one statement. `issue` locks the issue's row (FOR NO
# KEY UPDATE: the key checks of rows that refer to the issue are not blocked), so
# claims read and advance the cursor one after the other, and a pause or a cancel that
# commits first is seen. `again` takes rows due again (FOR UPDATE SKIP LOCKED) through
# ix_deliveries_due_again; `fresh` the next rows after the cursor through the unique
# (issue_id, subscriber_id) index, in its order, written by nobody. Only rows due
# again (their claimant's name) and rows whose reader is gone (cancelled) are
# written; the claim, its lease and ids, is inserted, and the recipients returned.
# `now` NULL: the database's clock (`database_now`).
# Every reader is looked up by key through a LATERAL that OFFSET 0 keeps from being
# flattened, the rows to update through `id = ANY(ARRAY(...))`. Written as plain
# joins, the planner hashed the whole deliveries and subscribers tables on every
# claim while they held a few tens of thousands of rows (18 ms a claim at 20,000),
# since it costs 500 index lookups as if each read the disk.
_CLAIM = """
WITH issue AS (
    SELECT i.id, COALESCE(i.claimed_through, -1) AS after FROM issues AS i
    WHERE i.id = %(issue)s AND i.status = 'sending'
    FOR NO KEY UPDATE
), again AS (
    SELECT d.id, d.subscriber_id, d.domain FROM deliveries AS d
    WHERE d.issue_id = %(issue)s AND d.status IN ('queued', 'deferred')
      AND d.next_attempt_at IS NOT NULL
      AND d.next_attempt_at <= COALESCE(%(now)s::timestamptz, now())
      AND (d.worker IS NULL OR NOT EXISTS (
          SELECT 1 FROM delivery_claims AS c
          WHERE c.worker = d.worker AND c.lease_until >= COALESCE(%(now)s::timestamptz, now())))
      AND EXISTS (SELECT 1 FROM issue)
    -- Oldest first, in the index's order: with nothing else the planner could walk
    -- the issue's rows in the unique index instead, on a ledger not analyzed yet.
    ORDER BY d.next_attempt_at
    LIMIT %(size)s
    FOR UPDATE OF d SKIP LOCKED
), fresh AS (
    SELECT d.id, d.subscriber_id, d.domain FROM deliveries AS d
    -- Bounded by row comparisons in the unique index's order: the scan starts at the
    -- cursor (with a plain `issue_id =` beside them, the btree starts at the issue's
    -- first row and steps past every row already claimed: 15 ms a claim half-way
    -- through a million), and the planner cannot walk ix_deliveries_subscriber_id
    -- past every other issue's rows instead.
    WHERE (d.issue_id, d.subscriber_id) > (%(issue)s, (SELECT after FROM issue))
      AND (d.issue_id, d.subscriber_id) < (%(issue)s + 1, 0)
      AND d.status = 'queued' AND d.worker IS NULL AND d.next_attempt_at IS NULL
    ORDER BY d.issue_id, d.subscriber_id
    LIMIT (SELECT %(size)s - count(*) FROM again)
), readers AS (
    SELECT p.id, p.subscriber_id, p.domain, p.again, s.email,
           s.status IS NOT DISTINCT FROM 'confirmed' AS live
    FROM (SELECT *, true AS again FROM again UNION ALL SELECT *, false FROM fresh) AS p
    LEFT JOIN LATERAL (
        SELECT email, status FROM subscribers WHERE id = p.subscriber_id OFFSET 0
    ) AS s ON true
), written AS (
    UPDATE deliveries AS d
    SET worker = %(worker)s, updated_at = COALESCE(%(now)s::timestamptz, now()),
        status = CASE WHEN r.live THEN d.status ELSE 'cancelled' END,
        next_attempt_at = CASE WHEN r.live THEN d.next_attempt_at END,
        last_error = CASE WHEN r.live THEN d.last_error ELSE 'subscriber no longer confirmed' END
    FROM readers AS r
    WHERE d.id = r.id AND d.id = ANY(ARRAY(SELECT id FROM readers WHERE again OR NOT live))
), advanced AS (
    UPDATE issues SET claimed_through = (SELECT max(subscriber_id) FROM fresh)
    WHERE id = %(issue)s AND EXISTS (SELECT 1 FROM fresh)
), lease AS (
    INSERT INTO delivery_claims (issue_id, worker, lease_until, ids, created_at)
    SELECT %(issue)s, %(worker)s, COALESCE(%(now)s::timestamptz, now()) + %(lease)s,
           array_agg(id ORDER BY id), COALESCE(%(now)s::timestamptz, now())
    FROM readers WHERE live HAVING count(*) > 0
    -- A claim run again under its name (its reply was lost) adds to the claim that
    -- may still be there because a row of it is `sending` (`release_claimant`).
    ON CONFLICT (worker) DO UPDATE
    SET lease_until = EXCLUDED.lease_until, ids = delivery_claims.ids || EXCLUDED.ids
)
SELECT id, subscriber_id, email, domain, live FROM readers
"""


def claim_in_one_statement(connection: Connection, issue_id: int, worker: str,
                           now: datetime | None, size: int, lease: timedelta) -> list[Recipient]:
    """`claim_batch` on PostgreSQL in one round trip (autocommit: its own transaction).

    Four statements and a transaction's BEGIN and COMMIT were a round trip each, per
    batch claimed; one statement does what they did, under the same conditions. `now`
    None: the database's clock, as the worker uses it.
    """
    found = driver_rows(connection, _CLAIM, {
        "issue": issue_id, "worker": worker, "now": now, "size": size, "lease": lease,
    })
    # Sorted by the id alone: comparing whole rows runs SQLAlchemy's Row.__lt__ in Python.
    return [Recipient(delivery_id, subscriber_id, email, domain)
            for delivery_id, subscriber_id, email, domain, live in sorted(found, key=_first)
            if live]


_first = operator.itemgetter(0)


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

    Only while this worker's claim still holds (its lease has not run out; the
    statement extends it by `lease`), only rows it still holds (`mine`: nobody
    re-claimed them after the lease ran out; `ids` are its claim's), and only of an
    issue still sending (not paused or cancelled meanwhile); the row takes the
    worker's name: so two workers never send the same row, a pause stops
    the next chunk, and every `sending` row has a claim the recovery finds it by.
    A row this worker already marked counts as ours: the transaction that marked it
    may have committed although its reply was lost to a dropped database connection,
    and the worker runs it again (a claimant name is never reused, so nothing else
    can have marked it under this name). `now` None: the database's clock. On
    PostgreSQL this is the marking half of `record_sent_and_mark`, so the worker's
    one-statement chunks and this run the same SQL.
    """
    if not is_sqlite(session):
        return record_sent_and_mark(session.connection(), [], ids, worker, now, lease,
                                    marked_at=now)
    at = clock(session, now)
    if not renew_claim(session, worker, now, lease):
        return set()
    claimed = set(session.scalar(select(DeliveryClaim.ids).where(DeliveryClaim.worker == worker))
                  or [])
    ids = [i for i in ids if i in claimed]
    if not ids:
        return set()
    sending = select(Issue.id).where(Issue.id == Delivery.issue_id,
                                     Issue.status == IssueStatus.SENDING).exists()
    again = Delivery.status == DeliveryStatus.SENDING
    result = session.execute(
        update(Delivery)
        .where(among(session, Delivery.id, ids), mine(worker),
               in_status(session, (*CLAIMABLE, DeliveryStatus.SENDING)), sending)
        .values(status=DeliveryStatus.SENDING, worker=worker, next_attempt_at=None,
                attempts=case((again, Delivery.attempts), else_=Delivery.attempts + 1),
                updated_at=at)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


# The chunk's whole transaction as one statement (PostgreSQL): the previous chunk's
# rows sent, the claim's lease extended, this chunk's rows `sending`. `mark_sending`
# and the sent branch of `record_outcomes`, with the same conditions, in one round
# trip; see `record_sent_and_mark`. Written as SQL because it runs once per chunk
# and SQLAlchemy's statement building and caching would cost more than the statement.
# `held` updates the claim first: its row lock orders the statement against the
# recovery's delete of an expired claim (`take_back`), one way or the other. Only
# rows among the claim's ids are marked: a fresh row carries no name to check.
# The rows of the last chunk, all sent: recorded as `record_outcomes` records a 250.
_RECORD_SENT = """
    UPDATE deliveries
    SET status = 'sent', sent_at = %(now)s, updated_at = %(now)s,
        last_code = 250, last_error = NULL
    WHERE id = ANY(%(sent)s::bigint[]) AND worker = %(worker)s AND status = 'sending'
"""

_RECORD_SENT_AND_MARK = """
WITH held AS (
    UPDATE delivery_claims
    SET lease_until = COALESCE(%(marked_at)s::timestamptz, now()) + %(lease)s
    WHERE worker = %(worker)s AND lease_until >= COALESCE(%(marked_at)s::timestamptz, now())
    RETURNING ids
), recorded AS (""" + _RECORD_SENT + """)
UPDATE deliveries AS d
SET status = 'sending', worker = %(worker)s, next_attempt_at = NULL,
    attempts = CASE WHEN d.status = 'sending' THEN d.attempts ELSE d.attempts + 1 END,
    updated_at = COALESCE(%(marked_at)s::timestamptz, now())
WHERE d.id = ANY(%(ids)s::bigint[])
  AND (d.worker = %(worker)s OR (d.worker IS NULL AND d.next_attempt_at IS NULL))
  AND (SELECT ids FROM held) @> ARRAY[d.id]
  AND d.status IN ('queued', 'deferred', 'sending')
  AND EXISTS (SELECT 1 FROM issues AS i WHERE i.id = d.issue_id AND i.status = 'sending')
RETURNING d.id
"""  # noqa: S608 (put together from constants of this module: no value reaches the text)


def record_sent_and_mark(connection: Connection, sent: Sequence[int], ids: Sequence[int],
                         worker: str, now: datetime | None, lease: timedelta,
                         marked_at: datetime | None = None) -> set[int]:
    """`record_outcomes` for rows that were all sent, then `mark_sending`, atomically.

    `now` is the sent rows' `sent_at`; the claim's lease is extended from `marked_at`
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
    found = driver_rows(connection, _RECORD_SENT_AND_MARK, {
        "sent": bigints(sent), "ids": bigints(ids), "worker": worker, "now": now,
        "lease": lease, "marked_at": marked_at,
    })
    return {delivery_id for delivery_id, in found}


def driver_rows(connection: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement of the send path through the driver's own cursor; its rows.

    For the statements a worker runs per chunk and per claim. SQLAlchemy's layer around
    a statement (its execution context, the result's metadata) cost the worker about
    160 us of CPU a chunk beside psycopg's 210. In a Session's transaction the statement
    runs in it, as through `exec_driver_sql`.
    Errors are SQLAlchemy's as `exec_driver_sql` raises them, so callers tell an
    unreachable database (`service.db.unavailable`) the same way, and a lost
    connection is handled as SQLAlchemy handles one: it is invalidated, and so are
    the pool's idle connections (the server that dropped one dropped them all), so
    the next checkout connects afresh instead of handing out another dead one.
    """
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, driver, cursor)
        if lost:
            connection.invalidate(exc)
            connection.engine.pool.dispose()
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from exc
    finally:
        cursor.close()


def bigints(ids: Iterable[int]) -> str:
    """A PostgreSQL array literal of ids, for a `::bigint[]` parameter.

    psycopg dumps a Python list element by element in Python (about 2 us an id on
    our 2-core machine, twice 30 ids a chunk); the literal is one join, and the cast
    checks it is a list of integers all the same.
    """
    return "{" + ",".join([str(int(i)) for i in ids]) + "}"


_RECORD_SENT_AND_END_CLAIM = """
WITH recorded AS (""" + _RECORD_SENT + """    RETURNING id
)
DELETE FROM delivery_claims AS c
WHERE c.worker = %(worker)s
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS d
      WHERE d.id = ANY(c.ids) AND d.worker = %(worker)s AND d.status = 'sending'
        AND d.id NOT IN (SELECT id FROM recorded))
RETURNING c.id
"""  # noqa: S608 (put together from constants of this module: no value reaches the text)


def record_sent_and_end_claim(connection: Connection, sent: Sequence[int], worker: str,
                              now: datetime) -> bool:
    """A batch's last transaction when its last chunk was all sent and it reached every row.

    `record_outcomes` for the sent rows, then `end_claim(..., reached_all=True)`, as
    one statement (PostgreSQL, autocommit). Both parts read one snapshot, in which
    the rows being recorded are still `sending`: the claim's check for rows left
    `sending` leaves them out by id. True if the claim ended. Run again after a lost
    reply, it changes nothing more: the rows are `sent`, the claim is gone.
    """
    if connection.dialect.name != "postgresql":
        raise ValueError("record_sent_and_end_claim runs on PostgreSQL; elsewhere use the steps")
    return bool(driver_rows(connection, _RECORD_SENT_AND_END_CLAIM, {
        "sent": bigints(sent), "worker": worker, "now": now}))


def renew_claim(session: Session, worker: str, now: datetime | None, lease: timedelta) -> int:
    """Extend the lease of `worker`'s claim; 1 if it still held, else 0.

    A lease that already ran out is never revived: once `lease_until` has passed,
    the recovery or another worker may be acting on the claim's rows, so only a
    claim whose lease still holds at `now` (None: the database's clock, as the
    worker uses it) is extended. One row, whatever the batch's size.
    """
    at = clock(session, now)
    result = session.execute(
        update(DeliveryClaim)
        .where(DeliveryClaim.worker == worker, DeliveryClaim.lease_until >= at)
        .values(lease_until=at + lease)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim_held(session: Session, issue_id: int, worker: str) -> bool:
    """Whether `worker` may go on: its issue is sending and its claim's lease still holds."""
    at = clock(session, None)
    return bool(session.scalar(select(
        select(DeliveryClaim.id).where(DeliveryClaim.worker == worker,
                                       DeliveryClaim.lease_until >= at).exists()
        & select(Issue.id).where(Issue.id == issue_id,
                                 Issue.status == IssueStatus.SENDING).exists()
    )))


def release(session: Session, ids: Iterable[int], worker: str, now: datetime) -> int:
    """Give back claimed rows that were not attempted (paused, stopped, connection down).

    They are due again at once (or when their retry was due): another claim takes
    them as rows due again, not as fresh ones, since the issue's cursor is past
    them. Returns how many.
    """
    ids = list(ids)
    if not ids:
        return 0
    result = session.execute(
        update(Delivery)
        .where(among(session, Delivery.id, ids), mine(worker), in_status(session, CLAIMABLE))
        .values(worker=None, updated_at=now,
                next_attempt_at=func.coalesce(Delivery.next_attempt_at, now))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def end_claim(session: Session, worker: str, now: datetime, *, reached_all: bool = False) -> bool:
    """The worker is done with its batch: its claim goes, unless a row is still `sending`.

    Fresh rows of it the worker never reached (it stopped early) are made due again
    first: the issue's cursor is past them. `reached_all`: the worker went through
    every row of the batch (each one marked, recorded or found changed), so there
    are none, and that look is skipped. Every other row it did not settle is
    anybody's to claim once the claim is gone. A row left `sending` (its outcome
    could not be written) keeps the claim, so the recovery finds it when the lease
    runs out. True if this call ended it. Two statements on PostgreSQL, which
    compares the claim's ids with its rows itself.
    """
    unreached = _untouched()
    if is_sqlite(session):
        claim = session.scalar(select(DeliveryClaim).where(DeliveryClaim.worker == worker))
        if claim is None:
            return False
        ours = among(session, Delivery.id, claim.ids)
        given_back = update(Delivery).where(ours, *unreached)
    else:
        ours = Delivery.id == any_(DeliveryClaim.ids)
        given_back = update(Delivery).where(DeliveryClaim.worker == worker, ours, *unreached)
    if not reached_all:
        session.execute(given_back.values(next_attempt_at=now, updated_at=now)
                        .execution_options(synchronize_session=False))
    sending = select(Delivery.id).where(ours, Delivery.worker == worker,
                                        Delivery.status == DeliveryStatus.SENDING)
    ended = session.execute(
        delete(DeliveryClaim).where(DeliveryClaim.worker == worker, ~sending.exists())
        .execution_options(synchronize_session=False)
    )
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def release_claimant(session: Session, issue_id: int, worker: str, now: datetime) -> int:
    """Give back every row of an issue still claimed under `worker`; returns how many.

    For a claim run again because its reply was lost with the connection: the first
    run may have committed, and its rows, held under this claimant name (and past
    the issue's cursor), would wait for the lease to run out. Claimant names are
    never reused, so only that lost claim's rows match. The claim ends with them
    unless a row of it is `sending` (`end_claim`).
    """
    claim = session.scalar(select(DeliveryClaim).where(DeliveryClaim.worker == worker,
                                                        DeliveryClaim.issue_id == issue_id))
    if claim is None:
        return 0
    released = release(session, claim.ids, worker, now)
    end_claim(session, worker, now, reached_all=True)  # `release` gave every fresh row back
    return released


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
            .values(status=DeliveryStatus.SENT, sent_at=now, updated_at=now,
                    last_code=250, last_error=None)
            .execution_options(synchronize_session=False)
        )
    for outcome in outcomes:
        if outcome.status is DeliveryStatus.SENT:
            continue
        table = Delivery.__table__
        row = table.c
        values: dict[str, object] = {
            "updated_at": now, "last_code": outcome.code,
            "last_error": (outcome.error or "")[:1000] or None,
        }
        if outcome.status is DeliveryStatus.QUEUED:  # never tried: as if never claimed
            values.update(status=DeliveryStatus.QUEUED, attempts=row.attempts - 1, last_code=None,
                          last_error=None, next_attempt_at=now)
        elif outcome.status is DeliveryStatus.FAILED:
            values.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        elif outcome.status is DeliveryStatus.UNCERTAIN and not resend_uncertain:
            values.update(status=DeliveryStatus.UNCERTAIN, next_attempt_at=None)
            values["uncertain_count"] = row.uncertain_count + 1
        else:
            retry_at = outcome.retry_at or now + _backoff_sql(session, outcome.delivery_id,
                                                              retry_base_seconds)
            given_up = row.give_up_at < now
            values["status"] = case((given_up, DeliveryStatus.FAILED.value),
                                    else_=DeliveryStatus.DEFERRED.value)
            values["next_attempt_at"] = case((given_up, None), else_=retry_at)
            if outcome.status is DeliveryStatus.UNCERTAIN:
                values["uncertain_count"] = row.uncertain_count + 1
        if outcome.attempted:
            held = and_(row.status == DeliveryStatus.SENDING, row.worker == worker)
        else:  # a row of its claim never marked: it may be fresh, with no name yet (`mine`)
            held = and_(row.status.in_(CLAIMABLE), mine(worker))
            values["worker"] = worker
        changed = session.execute(
            update(table).where(row.id == outcome.delivery_id,  # type: ignore[arg-type]
                                held).values(**values)
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
    pending = select(DeliveryCount.status).where(
        DeliveryCount.issue_id == issue_id, DeliveryCount.status.in_([s.value for s in PENDING])
    ).group_by(DeliveryCount.status).having(func.sum(DeliveryCount.number) != 0).exists()
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING, ~pending)
        .values(status=IssueStatus.SENT, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def waiting_since(session: Session, issue_id: int, now: datetime) -> datetime | None:
    """Since when the issue's oldest row a worker could claim now has waited; None: no row.

    Rows due again that no live claim holds (`ix_deliveries_due_again`) wait since
    their `next_attempt_at`, fresh rows after the issue's cursor since the fan-out
    wrote them. Fresh rows inside a live claim are its holder's to send, and rows
    due later wait for nobody yet. Two index lookups, whatever the issue's size.
    """
    again = session.scalar(select(Delivery.next_attempt_at)
                           .where(*_due_again(session, issue_id, now))
                           .order_by(Delivery.next_attempt_at).limit(1))
    fresh = session.scalar(select(Delivery.created_at)
                           .where(*_fresh(issue_id))
                           .order_by(Delivery.issue_id, Delivery.subscriber_id).limit(1))
    found = [at for at in (again, fresh) if at is not None]
    return min(found) if found else None


def has_due_rows(session: Session, issue_id: int, now: datetime) -> bool:
    """Whether a worker would find something to claim right now."""
    return waiting_since(session, issue_id, now) is not None


def expire_leases(session: Session, now: datetime, resend_uncertain: bool) -> int:
    """Rows left `sending` by a worker that died: their outcome is unknown.

    Each becomes one more recorded possible duplicate; under the at-least-once
    policy it is retried at once, otherwise it stays `uncertain`.
    """
    return sum(take_back(session, now, resend_uncertain)[0].values())


def take_back(session: Session, now: datetime,
              resend_uncertain: bool) -> tuple[CounterType[int], CounterType[int]]:
    """Every claim whose lease ran out by `now` goes; its rows, per issue: (uncertain, due).

    Rows it left `sending` are outcomes nobody knows: each counts one more possible
    duplicate and is retried at once under the at-least-once policy, otherwise stays
    `uncertain`. Rows it had claimed and not attempted are due again (nothing was
    sent for them): given back (`release`), so they are claimed again as rows due
    again, and counted, so their issue is rung once. The claims are deleted first, in a
    statement of their own: a worker's chunk statement extends its claim's lease in
    the same row (`mark_sending`), so either the chunk came first and the lease is
    no longer out, or the claim is gone before the chunk marks anything, and the
    rows read after the delete are as that worker left them.
    """
    expired = session.execute(
        delete(DeliveryClaim).where(DeliveryClaim.lease_until < now)
        .returning(DeliveryClaim.issue_id, DeliveryClaim.worker, DeliveryClaim.ids)
        .execution_options(synchronize_session=False)
    ).all()
    uncertain: CounterType[int] = CounterType()
    due: CounterType[int] = CounterType()
    values: dict[str, object] = {
        "uncertain_count": Delivery.uncertain_count + 1, "updated_at": now,
        "last_error": "worker stopped during the send; outcome unknown",
    }
    if resend_uncertain:
        values.update(status=DeliveryStatus.DEFERRED, next_attempt_at=now)
    else:
        values.update(status=DeliveryStatus.UNCERTAIN, next_attempt_at=None)
    for issue_id, worker, ids in expired:
        due[issue_id] += release(session, ids, worker, now)
        uncertain[issue_id] += int(session.execute(
            update(Delivery).where(among(session, Delivery.id, ids), Delivery.worker == worker,
                                   Delivery.status == DeliveryStatus.SENDING)
            .values(**values).execution_options(synchronize_session=False)
        ).rowcount)  # type: ignore[attr-defined]
    return +uncertain, +due


@dataclass(frozen=True)
class Leases:
    """Rows held by workers right now, by the database's clock."""

    held: int  # claimed or sending, lease still running
    sending: int  # of those, `sending`
    expired: int  # lease ran out, not yet returned to due by the recovery
    oldest_expired_at: datetime | None


def leases(session: Session, now: datetime) -> Leases:
    """What `chapar status` shows about leases (reads only the claims and their rows)."""
    held = sending = expired = 0
    oldest: datetime | None = None
    for worker, until, ids in session.execute(
            select(DeliveryClaim.worker, DeliveryClaim.lease_until, DeliveryClaim.ids)).all():
        rows = dict(session.execute(
            select(Delivery.status, func.count())
            .where(among(session, Delivery.id, ids), mine(worker),
                   Delivery.status.in_((*CLAIMABLE, DeliveryStatus.SENDING)))
            .group_by(Delivery.status)
        ).all())
        total = sum(rows.values())
        if until >= now:
            held += total
            sending += rows.get(DeliveryStatus.SENDING, 0)
        elif total:
            expired += total
            oldest = until if oldest is None else min(oldest, until)
    return Leases(held, sending, expired, oldest)


def fail_expired(session: Session, now: datetime) -> int:
    """Deferred rows past their give-up time fail; nobody retries them any more."""
    result = session.execute(
        update(Delivery)
        .where(*deferred(), Delivery.give_up_at < now, unclaimed(now))
        .values(status=DeliveryStatus.FAILED, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def counted(session: Session, issue_ids: Iterable[int]) -> dict[int, CounterType[str]]:
    """Rows per status of each issue, and `possible_duplicates` (uncertain outcomes).

    Read from `delivery_counts`, which triggers keep with every change to the ledger,
    so it is exact in any snapshot and costs a few rows per issue, not a pass over
    a million. An issue with no rows is absent.
    """
    found: dict[int, CounterType[str]] = {}
    ids = list(issue_ids)
    if not ids:
        return found
    for issue_id, status, number, duplicates in session.execute(
        select(DeliveryCount.issue_id, DeliveryCount.status, func.sum(DeliveryCount.number),
               func.sum(DeliveryCount.duplicates))
        .where(DeliveryCount.issue_id.in_(ids))
        .group_by(DeliveryCount.issue_id, DeliveryCount.status)
    ):
        counter = found.setdefault(issue_id, CounterType())
        counter[status] += int(number or 0)
        counter["possible_duplicates"] += int(duplicates or 0)
    return found


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Rows per status for one issue (every status, 0 included), plus `possible_duplicates`."""
    found = counted(session, [issue_id]).get(issue_id, CounterType())
    return {**{status.value: found[status.value] for status in DeliveryStatus},
            "possible_duplicates": found["possible_duplicates"]}
