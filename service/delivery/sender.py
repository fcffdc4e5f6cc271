"""The worker side of a send: claim a batch, send it in chunks, record every outcome.

Per chunk of at most CHUNK (30) recipients: the rows are marked `sending` in the
transaction that records the previous chunk's outcomes (one UPDATE each way,
committed), the messages go out over the process's persistent connection, and the
outcomes wait for the next chunk's transaction. So at most one chunk is `sending`
at any moment: a pool process killed at any instant leaves at most 30 rows whose
outcome is unknown; the sweeper's recovery records them as uncertain (every
possible duplicate on record). Everything else a crash leaves behind is merely
claimed, and is due again as soon as its lease runs out and the recovery gives it
back.

Claims. A batch (CHAPAR_SEND_BATCH_SIZE, 500 rows) is claimed in one statement
(`ledger.claim_batch`): rows due again first (deferred, or given back), then fresh
rows after the issue's cursor, which the claim advances past them without writing
them. So a message sent at its first try writes the ledger twice after the
fan-out: `sending` with its chunk, `sent` with the next.

Several connections. A chunk of at least 2 x PER_CONNECTION rows is cut into up to
CHAPAR_SMTP_CONNECTIONS (2) contiguous parts, each sent over its own persistent
connection at the same time, from the one thread (transport.send_interleaved): with
one connection every message costs a round trip through the server during which the
connection idles; with several, one connection's round trip hides behind another's
write. Meanwhile the next chunk's messages are built (BuildAhead). It is still one
chunk: its rows are marked `sending` together before any part goes out, and their
outcomes are recorded together, so at most CHUNK rows are `sending` per process
whatever the number of connections. A connection lost in one part affects only that
part's messages.

One statement a chunk. On PostgreSQL the claim, and a chunk's transaction when the
previous chunk was all sent (the usual case), are one statement each, run in
autocommit (ledger.claim_in_one_statement, ledger.record_sent_and_mark): one round
trip instead of BEGIN, two or four statements and COMMIT. They run on one connection
the task holds from its first such statement to its end (`DeliveryAgent._autocommit`),
through psycopg's cursor (`ledger.driver_rows`). Other outcomes, and the metrics
counters once a second, take the transaction below.

Leases. A claim is a lease of CHAPAR_LEASE_SECONDS (20 s) on one row of
`delivery_claims` (its claimant name, the ids it took), written and compared on the
database's clock (`ledger.database_now`), so hosts whose clocks disagree cannot
judge one lease differently. Each chunk's statement extends it, and while the
process is alive a background thread (`LeaseKeeper`) renews it every twentieth of
the lease (1 s). A thread, not only the chunks: a pool process also waits where no
chunk boundary comes (a slow or throttled SMTP server, a 421 pause, a reconnect,
the back-off of a database outage below), and the lease must outlive each of
those waits, but not the process: SIGKILL stops the thread with it, the lease runs
out within 20 s, and `sweeper.recover` (beat, every CHAPAR_LEASE_CHECK_SECONDS,
5 s) takes the claim's rows back and rings their issue. The thread and the sending
thread share one lock around their transactions, so a renewal never waits on (or
deadlocks with) the process's own writes. Each renewal writes the one claim row,
whatever the batch's size; the ledger's rows carry no lease. The batch's last
transaction ends the claim (`ledger.end_claim`), so rows it did not reach are
due again at once.

The worker keeps its own, conservative view of the lease: `LeaseKeeper.remaining()`
counts from the monotonic instant before the last successful claim or renewal
began, which is no later than the database's `now()` inside it, so the real lease
(`now() + lease`) ends no earlier than the worker believes. Before each chunk the
worker checks it still has at least half a lease left and, if the renewals have
been failing, renews in line or waits: a worker whose renewals fail stops sending
long before its lease can run out under it, and two workers never hold one row.

A database outage. A pool process that cannot reach the database (OperationalError,
a dropped or refused connection) keeps what it already has - the outcomes of the
chunk it sent, its claim - and stops: no claim, no chunk, nothing sent. It retries
the same unit of work (the very transaction that would have recorded those outcomes
and marked the next chunk) with back-off (0.1 s doubling to 1 s; 5 s once its lease
must be over), logging once when the outage begins and once when it ends. When the
database answers, that write is the first thing the process does, then it carries
on. Why that is safe, and the bound:

- Rows are taken from a worker only by a statement running on the database once it
  answers again: the recovery (its claim's `lease_until < now()`, for `sending`
  rows) or another worker's claim (the same test, for claimed rows). While it is
  unreachable, nobody can take anything.
- Its claim's `lease_until` is at least the database time of its last successful
  renewal plus the lease. That renewal came at most one renewal interval (1 s)
  before the cut. So, with an outage of D seconds, the rows are still the worker's
  when the database returns provided D + 1 s + the first retry's delay (at most
  1 s, plus reconnecting) < 20 s: outages up to about 17 s cost nothing, and the
  15 s outage of tests/delivery/test_database_outage.py leaves no uncertain row.
  A longer lease tolerates longer outages and delays the recovery from a crash
  by as much; both are CHAPAR_LEASE_SECONDS.
- Once the database answers, the worker's write and the recovery race only if the
  lease has run out; each statement waits for the other's row locks and re-reads
  the row. Outcomes are written only to rows still `sending` under this worker's
  claimant name (`ledger.record_outcomes`), and the next chunk is marked only
  while the claim's lease still holds, extending it in the same statement
  (`ledger.mark_sending`): if the recovery came first, the claim is gone, nothing
  more is marked and the rows stay the uncertain outcomes it recorded; if the
  worker came first, the lease holds again and the recovery leaves the claim.
  Either way no row is sent twice unrecorded.
- A commit whose reply was lost is run again: the outcome write changes nothing
  the second time (only `sending` rows change) and `mark_sending` accepts rows it
  already marked under this claimant name. A claim run again first gives back
  whatever its lost run claimed under the same claimant name (`_claim`), so those
  rows are due at once instead of when their lease runs out.

So only a worker that dies, or a database away for longer than the lease minus a
renewal interval, leaves rows uncertain; the recovery then sends them again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.db import unavailable, unit_of_work
from service.delivery import health, ledger
from service.delivery.dkim import DkimKeyError, DkimSigner
from service.delivery.ledger import Outcome
from service.delivery.message import IssueMessage, Recipient
from service.delivery.models import DeliveryStatus
from service.delivery.throttle import Throttle
from service.delivery.transport import (
    Envelope,
    Result,
    SmtpConnection,
    SmtpError,
    connection_for,
    send_interleaved,
)
from service.digests.models import Issue
from service.instance_keys import MESSAGE_ID, instance_key
from service.ops.outages import OutageTracker
from service.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 30  # rows marked `sending` at once: the most a killed worker can leave uncertain
IDLE_CHECK_SECONDS = 20.0
RENEWALS_PER_LEASE = 20  # the lease is renewed every twentieth of it (1 s of 20 s)
RETRY_FIRST_SECONDS = 0.1  # back-off while the database is unreachable: doubling to...
RETRY_HELD_SECONDS = 1.0  # ...at most this while the lease may still hold,
RETRY_LOST_SECONDS = 5.0  # and this once it must have run out
OUTAGE_GIVE_UP_SECONDS = 600.0  # then the task ends; the sweeper settles what it held
TALLY_SECONDS = 1.0  # the metrics counters are added to at most this often (and per batch)
QUIT_WAIT_SECONDS = 10.0  # a stopping worker waits this long for a send to finish its chunk
TASK_BUDGET_SECONDS = 120.0  # then the task rings again and returns, so no task runs for hours
PER_CONNECTION = 10  # a chunk is cut into parts of at least this many messages, one a connection
EXTRA_RETRY_SECONDS = 60.0  # an extra connection that failed to open is tried again after this


@dataclass
class BatchReport:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    finished: bool = False
    more: bool = False  # stopped early with work left: ring again


class DatabaseGone(Exception):
    """The database stayed unreachable past OUTAGE_GIVE_UP_SECONDS: the task ends."""


def unreachable(exc: BaseException) -> bool:
    """A dropped, refused or broken database connection (or a deadlock): worth retrying."""
    return unavailable(exc) or (isinstance(exc, DBAPIError) and bool(exc.connection_invalidated))


class LeaseKeeper:
    """Renews the lease on the batch this process holds, from a daemon thread (see above).

    `remaining()` is the worker's conservative view of its lease, in seconds. `lock` is
    held around every transaction of the sending thread and every renewal.
    """

    def __init__(self, rt: Runtime, outage: OutageTracker) -> None:
        self.rt = rt
        self.outage = outage
        self.lease = timedelta(seconds=rt.settings.lease_seconds)
        self.every = rt.settings.lease_seconds / RENEWALS_PER_LEASE
        self.lock = threading.Lock()
        self._state = threading.Lock()
        self._worker: str | None = None
        self._deadline = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, worker: str, began: float) -> None:
        """A batch was claimed by a transaction that began at monotonic `began`."""
        with self._state:
            self._worker = worker
            self._deadline = began + self.lease.total_seconds()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()

    def release(self) -> None:
        with self._state:
            self._worker, self._deadline = None, 0.0

    def remaining(self) -> float:
        with self._state:
            return self._deadline - time.monotonic() if self._worker else 0.0

    def renew(self, session: Session) -> int:
        """One renewal in the caller's transaction (the caller holds `lock`)."""
        with self._state:
            worker = self._worker
        if worker is None:
            return 0
        return ledger.renew_claim(session, worker, None, self.lease)

    def renewed(self, began: float) -> None:
        """The renewal that began at `began` committed."""
        with self._state:
            if self._worker is not None:
                self._deadline = max(self._deadline, began + self.lease.total_seconds())

    def stop(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._wake.wait(self.every):
            if self._worker is None:
                continue
            # Not forever: a statement of the sending thread stuck on a half-open
            # connection must not stop this thread from noticing and logging it.
            if not self.lock.acquire(timeout=self.lease.total_seconds()):
                continue
            try:
                began = time.monotonic()
                with unit_of_work(self.rt.sessions) as session:
                    renewed = self.renew(session)
            except Exception as exc:
                if unreachable(exc):
                    self.outage.failed(exc)
                else:
                    log.exception("lease renewal failed")
                continue
            finally:
                self.lock.release()
            if renewed:  # the claim still holds: its lease runs from `began` on
                self.renewed(began)
            self.outage.succeeded()


class IdleCloser:
    """Says QUIT on connections left unused for `seconds` (RFC 5321 4.1.1.10).

    Without it a worker between sends holds its sessions until the server times them
    out (Postfix logs "timeout after END-OF-MESSAGE" after 300 s). A timer thread
    closes them while the process waits for its next task; `use()` holds the lock, so
    the timer never closes a connection in the middle of a send.
    """

    def __init__(self, connections: Sequence[SmtpConnection], seconds: float) -> None:
        self.connections = list(connections)
        self.seconds = seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    @contextmanager
    def use(self) -> Iterator[None]:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                yield
            finally:
                if any(c.is_open() for c in self.connections):
                    self._timer = threading.Timer(self.seconds, self._close_if_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            # A timer that fired while a send held the lock finds the connections fresh.
            for c in self.connections:
                if c.is_open() and time.monotonic() - c.last_used >= self.seconds:
                    c.close()

    def close(self) -> None:
        """QUIT now (the worker is stopping); waits briefly for a send in progress."""
        if self._lock.acquire(timeout=QUIT_WAIT_SECONDS):
            try:
                if self._timer is not None:
                    self._timer.cancel()
                for c in self.connections:
                    c.close()
            finally:
                self._lock.release()


class DeliveryAgent:
    """One per worker process: its SMTP connection, its throttle, its built messages."""

    def __init__(self, rt: Runtime, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.rt = rt
        self.clock = clock
        self.connection = connection_for(rt.settings)
        # Further connections, for the parts of a chunk sent at the same time as the first.
        self.extra = [connection_for(rt.settings) for _ in range(rt.settings.smtp_connections - 1)]
        self.extra_failed = 0.0  # monotonic: when an extra connection last failed to open
        self.idle = IdleCloser([self.connection, *self.extra], rt.settings.smtp_idle_seconds)
        self.throttle = Throttle(rt.settings)
        self.messages: dict[int, IssueMessage] = {}
        self.dkim: DkimSigner | None = None
        self.dkim_loaded = False
        self.connect_error = ""
        from service.ops.metrics import SendTally

        self.tally = SendTally()  # added to the metrics counters with the outcomes it counts
        self.newly_paused: set[str] = set()  # domains that answered 421, for the incident log
        self.outage = rt.database_outages  # one warning per outage for the whole process
        self.keeper = LeaseKeeper(rt, self.outage)
        self.began = 0.0  # monotonic: when the last committed unit of work began
        # This agent's name in ops_writers, and the number of its current unit of work
        # (`_db`), the same in every attempt at it (`_first_write`).
        self.writer = uuid.uuid4().hex
        self.units = 0
        self._unit_first: bool | None = None
        # A claim, and a chunk whose previous chunk was all sent, are one statement each
        # (ledger.claim_in_one_statement, ledger.record_sent_and_mark); PostgreSQL only.
        self.one_statement_chunks = rt.engine.dialect.name == "postgresql"
        # Their connection is held for the task (`_autocommit`) when the pool can lend
        # a second one meanwhile (the lease keeper's renewals, the other transactions).
        s = rt.settings
        self.hold_connection = s.database_pool_size + s.database_max_overflow >= 2

    def _db(self, work: Callable[[Any], T], *, single_statement: bool = False) -> T:
        """Run one unit of work; while the database is unreachable, wait and run it again.

        Each attempt is the same transaction from the start (what it writes is held in
        memory until it commits), taken under the lease keeper's lock. Nothing else
        happens meanwhile: the process neither claims nor sends until it answers.
        `work` gets a Session, or with `single_statement` a Connection in autocommit
        for work that is one statement (its own transaction).
        """
        attempt = 0
        self.units += 1
        while True:
            with self.keeper.lock:
                began = time.monotonic()
                self.rerun = attempt > 0
                self._ops_staged = False
                self._unit_first = None
                try:
                    if single_statement:  # its own transaction: no BEGIN, no COMMIT
                        result = work(self._autocommit())
                        if not self.hold_connection:
                            self.let_go()
                    else:
                        with unit_of_work(self.rt.sessions) as session:
                            result = work(session)
                except Exception as exc:
                    if single_statement:  # the next attempt starts on a fresh connection
                        self.let_go(broken=True)
                    if not unreachable(exc):
                        raise
                    self.outage.failed(exc)
                else:
                    self.began = began
                    self._committed()
                    self.outage.succeeded()
                    return result
            if self.outage.seconds_down() > OUTAGE_GIVE_UP_SECONDS:
                raise DatabaseGone(f"database unreachable for {self.outage.seconds_down():.0f} s")
            ceiling = RETRY_HELD_SECONDS if self.keeper.remaining() > 0 else RETRY_LOST_SECONDS
            time.sleep(min(ceiling, RETRY_FIRST_SECONDS * 2 ** attempt))
            attempt += 1

    def _autocommit(self) -> Connection:
        """The connection the send's one-statement units run on, in autocommit.

        Held from the first such unit of a task to its end (`let_go`), not taken from
        the pool for each chunk: a checkout, the switch to autocommit and the check-in
        cost about 300 us of this process's CPU, ten microseconds a message. So a pool
        process uses two connections while it sends (this one, and the lease keeper's
        or another transaction's, one at a time under the keeper's lock); with a pool
        of one connection in all (`hold_connection` false) it is taken for each unit.
        """
        if self._held is not None and self._held_since != self.outage.failures:
            # The database was unreachable since it was taken (from this thread or the
            # lease keeper's): it may be dead, and a statement on it would fail once
            # more after the database came back, as a second outage.
            self.let_go(broken=True)
        if self._held is None:
            self._held_since = self.outage.failures
            self._held = self.rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._held

    def let_go(self, *, broken: bool = False) -> None:
        """Give the held connection back to the pool when the task ends; `broken` (a
        statement on it failed): discard it, whatever the failure was."""
        held, self._held = self._held, None
        if held is not None:
            with suppress(Exception):
                if broken:
                    held.invalidate()
                held.close()

    _held: Connection | None = None
    _held_since = 0  # the outage tracker's failure count when it was taken

    def _first_write(self, session: Session) -> bool:
        """Whether this unit of work's counters and incidents are still to be written.

        False when it is run again after a commit that landed although its reply was
        lost: adding them again would count them twice (`service.ops.writers`).
        """
        if self._unit_first is None:
            from service.ops import writers

            self._unit_first = writers.first_time(session, self.writer, self.units, self.clock())
        return self._unit_first

    def _committed(self) -> None:
        """What a unit of work staged for the ops views is now on record."""
        if self._ops_staged:
            self.tally.increments.clear()
            self.tally_written = time.monotonic()
            self.sent_unreported = False
            self.newly_paused.clear()
            self._ops_staged = False

    _ops_staged = False
    rerun = False  # the unit of work `_db` runs is an attempt after the first
    tally_written = 0.0  # monotonic: when the counters were last added to
    sent_unreported = False  # a message went out since the sending health was last cleared

    def load_dkim(self) -> bool:
        """Load the DKIM key once; False (and the failure recorded) when it cannot be used."""
        if not self.dkim_loaded:
            try:
                self.dkim = DkimSigner.from_settings(self.rt.settings)
            except DkimKeyError as exc:
                log.warning("cannot send: %s", exc)
                reason = str(exc)
                self._db(lambda session: health.record_failure(session, reason, self.clock()))
                return False
            self.dkim_loaded = True
        return True

    def name(self) -> str:
        """A fresh claimant name per batch: a lease is never confused across tasks."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def message_for(self, issue_id: int) -> IssueMessage | None:
        if issue_id not in self.messages:
            message = self._db(lambda session: self._build_message(session, issue_id))
            if message is None:
                return None
            self.messages = {issue_id: message}
        return self.messages[issue_id]

    def _build_message(self, session: Session, issue_id: int) -> IssueMessage | None:
        issue = session.get(Issue, issue_id)
        if issue is None:
            return None
        s = self.rt.settings
        return IssueMessage(
            issue_number=issue.number, subject=issue.subject, html=issue.html,
            text=issue.text, from_name=s.from_name, from_address=s.from_address,
            list_name=s.list_name, list_id=s.list_id, public_url=s.public_url,
            verp_domain=s.verp_domain, tokens=self.rt.tokens,
            secret=instance_key(session, MESSAGE_ID).hex(),
            dkim=self.dkim, click_mode=s.track_clicks,
            articles=[(a.article_id, a.url) for a in issue.articles],
        )

    def deliver(self, issue_id: int, *, budget: float = TASK_BUDGET_SECONDS) -> BatchReport:
        """Send due rows of one issue until none is left or the time budget is spent."""
        with self.idle.use():
            try:
                report = self._deliver(issue_id, budget)
            finally:
                self.let_go()
        if self._ops_unwritten():  # the task ends: what its last second counted
            self._db(lambda session: self._record_ops(session, force=True))
        return report

    def _deliver(self, issue_id: int, budget: float) -> BatchReport:
        report = BatchReport()
        if not self.load_dkim():  # rows stay due; the sweeper rings again
            return report
        message = self.message_for(issue_id)
        if message is None:
            return report
        s = self.rt.settings
        lease = timedelta(seconds=s.lease_seconds)
        started = time.monotonic()
        while True:
            worker = self.name()
            batch = self._db(partial(self._claim, issue_id=issue_id, worker=worker, lease=lease),
                             single_statement=self.one_statement_chunks)
            if not batch:
                report.finished = self._finish_if_done(issue_id)
                return report
            report.claimed += len(batch)
            self.keeper.hold(worker, self.began)
            try:
                carry_on = self._send_batch(issue_id, message, batch, worker, lease, report)
            finally:
                self.keeper.release()
            if not carry_on:
                report.finished = self._finish_if_done(issue_id)  # all rows may have settled
                return report
            if time.monotonic() - started > budget:
                report.more = True
                return report

    def _claim(self, db: Any, *, issue_id: int, worker: str, lease: timedelta) -> list[Recipient]:
        """A batch for `worker`: one statement in autocommit (PostgreSQL) or a transaction.

        Run again (`_db`) after its reply was lost, it first gives back the rows the
        lost run may have claimed under the same name, which would otherwise wait for
        their lease to run out.
        """
        size = self.rt.settings.send_batch_size
        if self.rerun and self.one_statement_chunks:  # autocommit: each statement lands alone
            with Session(bind=db) as session:
                ledger.release_claimant(session, issue_id, worker, self.clock())
        elif self.rerun:
            ledger.release_claimant(db, issue_id, worker, self.clock())
        if self.one_statement_chunks:
            return ledger.claim_in_one_statement(db, issue_id, worker, None, size, lease)
        return ledger.claim_batch(db, issue_id, worker, ledger.database_now(db), size, lease)

    def _record_and_mark(self, session: Session, *, outcomes: Sequence[Outcome], ids: list[int],
                         worker: str, lease: timedelta) -> set[int]:
        """The chunk's transaction: the previous chunk's outcomes, then this chunk `sending`."""
        self._record(session, outcomes, worker)
        return ledger.mark_sending(session, ids, worker, None, lease)

    def _record_failure(self, session: Session, *, detail: str) -> None:
        health.record_failure(session, detail, self.clock())

    def _finish_if_done(self, issue_id: int) -> bool:
        return self._db(lambda session: ledger.finish_if_done(session, issue_id, self.clock()))

    def _send_batch(self, issue_id: int, message: IssueMessage, batch: Sequence[Recipient],
                    worker: str, lease: timedelta, report: BatchReport) -> bool:
        """Send one claimed batch; False when the send must stop (paused, server down).

        One transaction per chunk: it records the previous chunk's outcomes and marks
        this chunk `sending`. Whatever stops the loop, the last outcomes are written
        and the claim ends with them (`ledger.end_claim`: the rows it did not settle
        are anybody's at once), unless the database stayed away so long that the task
        gives up; then the claim's lease runs out and the recovery settles its rows.
        """
        unrecorded: list[Outcome] = []

        def last(session: Session, *, reached_all: bool) -> None:
            self._record(session, unrecorded, worker)
            ledger.end_claim(session, worker, self.clock(), reached_all=reached_all)

        try:
            carry_on = self._send_chunks(issue_id, message, batch, worker, lease, report, unrecorded)
        except DatabaseGone:
            raise
        except BaseException:
            self._db(partial(last, reached_all=False))
            raise
        # Gone through to the end, every row of the batch was marked, recorded as
        # skipped, or found changed by someone else: none is left fresh.
        if carry_on and self._all_sent(unrecorded):  # the usual end: one statement
            sent = [o.delivery_id for o in unrecorded]
            self._db(partial(ledger.record_sent_and_end_claim, sent=sent, worker=worker,
                             now=self.clock()), single_statement=True)
            self.sent_unreported |= bool(sent)
        else:
            self._db(partial(last, reached_all=carry_on))
        return carry_on

    def _all_sent(self, unrecorded: Sequence[Outcome]) -> bool:
        """Whether the outcomes to record can go in one statement (`ledger.*_sent_*`).

        PostgreSQL only, every outcome `sent`, and no metrics or incidents due: those
        take the transaction of `_record`.
        """
        return (self.one_statement_chunks and not self._ops_due()
                and all(o.status is DeliveryStatus.SENT for o in unrecorded))

    def _send_chunks(self, issue_id: int, message: IssueMessage, batch: Sequence[Recipient],
                     worker: str, lease: timedelta, report: BatchReport,
                     unrecorded: list[Outcome]) -> bool:
        size = self.throttle.largest_chunk(CHUNK)
        ahead = BuildAhead(self, message)  # the next chunk's messages, built while this one is sent
        for start in range(0, len(batch), size):
            chunk = list(batch[start:start + size])
            rest = [r.delivery_id for r in batch[start:]]
            chunk = self._skip_paused_domains(chunk, worker)
            if not chunk:
                continue
            if unrecorded and (self.throttle.limited or not self.connection.is_open()):
                # About to wait (rate limit, reconnect): settle the last chunk first, so
                # its rows are not left `sending` long enough to look abandoned.
                self._db(lambda session: self._record(session, unrecorded, worker))
                unrecorded.clear()
            self.throttle.acquire(Counter(r.domain for r in chunk))
            if not self._connected():
                self._defer_all(chunk, worker, lease, "cannot connect to the SMTP server")
                self._release(rest[len(chunk):], worker)
                report.outcomes["deferred"] += len(chunk)
                return False
            extra = self._extra_connections(len(chunk))  # opened before any row is `sending`
            envelopes = ahead.take(chunk)
            self._keep_lease()
            ids = [r.delivery_id for r in chunk]

            if self._all_sent(unrecorded):
                sent = [o.delivery_id for o in unrecorded]
                ours = self._db(partial(ledger.record_sent_and_mark, sent=sent, ids=ids,
                                        worker=worker, now=self.clock(), lease=lease),
                                single_statement=True)
                self.sent_unreported |= bool(sent)
            else:
                ours = self._db(partial(self._record_and_mark, outcomes=unrecorded, ids=ids,
                                        worker=worker, lease=lease))
            unrecorded.clear()
            if ours:  # the statement extended the claim's lease from when it began
                self.keeper.renewed(self.began)
            if ours and time.monotonic() - self.began > lease.total_seconds() / 2:
                # The marking transaction itself took half a lease (a lock wait, a
                # database that answered slowly): too little of the lease it wrote may
                # be left for this chunk. Send nothing; the rows are as if never tried.
                log.warning("marking %d rows took %.1f s: not sending them on that lease",
                            len(ours), time.monotonic() - self.began)
                unrecorded.extend(Outcome(i, DeliveryStatus.QUEUED, None, "lease too short to send")
                                  for i in sorted(ours))
                self._release(rest[len(chunk):], worker)
                return False
            if not ours and not self._still_held(issue_id, worker):
                # Paused or cancelled, or the claim's lease ran out (the database was
                # away too long) and the recovery took the rows back.
                self._release(rest, worker)
                return False
            mine = [(r, e) for r, e in zip(chunk, envelopes, strict=True) if r.delivery_id in ours]
            began = time.monotonic()
            ahead.start(batch[start + size:start + 2 * size])
            results = self._send_parts([e for _, e in mine], extra, ahead.build_some)
            self.tally.observe(results, time.monotonic() - began)
            refused = next((r for r in results if r.stage == "mail" and r.kind != "sent"), None)
            if refused is not None:  # the relay refuses our sender: nobody gets mail
                detail = f"MAIL FROM refused: {refused.code} {refused.text}"
                self._db(partial(self._record_failure, detail=detail))
            outcomes = [self._outcome(r, result) for (r, _), result in zip(mine, results, strict=True)]
            unrecorded.extend(outcomes)
            report.outcomes.update(o.status.value for o in outcomes)
        return True

    def _send_parts(self, envelopes: list[Envelope], extra: list[SmtpConnection],
                    between: Callable[[], bool]) -> list[Result]:
        """One chunk over the first connection and `extra` at once; results in chunk order.

        The chunk is cut into contiguous parts of at least PER_CONNECTION messages,
        one per connection, sent together from this thread (`send_interleaved`): one
        connection's round trip through the server hides behind the others' writes.
        It is still one chunk: its rows were marked `sending` together and its outcomes
        are recorded together, so at most CHUNK rows are `sending` per process
        whatever the number of connections. A connection lost in one part affects only
        that part's messages.
        """
        n = min(1 + len(extra), max(1, len(envelopes) // PER_CONNECTION))
        connections = [self.connection, *extra][:n]
        bounds = [len(envelopes) * k // n for k in range(n + 1)]
        parts = [(c, envelopes[bounds[k]:bounds[k + 1]]) for k, c in enumerate(connections)]
        return [result for found in send_interleaved(parts, between) for result in found]

    def _extra_connections(self, messages: int) -> list[SmtpConnection]:
        """The extra connections this many messages are worth, open; [] when none opens.

        An extra connection that fails to open is not waited for: the chunk goes over
        the connections that are open, and the extras are tried again after
        EXTRA_RETRY_SECONDS.
        """
        wanted = min(len(self.extra), messages // PER_CONNECTION - 1)
        ready = []
        for c in self.extra[:max(0, wanted)]:
            if c.is_open() and time.monotonic() - c.last_used > IDLE_CHECK_SECONDS and not c.alive():
                c.close()
            if not c.is_open():
                if time.monotonic() - self.extra_failed < EXTRA_RETRY_SECONDS:
                    continue
                try:
                    c.open()
                except SmtpError as exc:  # the first connection carries the chunk alone
                    log.info("extra SMTP connection failed: %s", exc)
                    self.extra_failed = time.monotonic()
                    continue
            ready.append(c)
        return ready

    def _keep_lease(self) -> None:
        """Send nothing on a lease with less than half of it left: renew it first.

        The keeper renews every twentieth of the lease, so this only runs when its
        renewals have been failing (the database was unreachable): then `_db` waits
        until a renewal commits, and the chunk goes out on a fresh lease.
        """
        if self.keeper.remaining() >= self.keeper.lease.total_seconds() / 2:
            return
        if self._db(self.keeper.renew):
            self.keeper.renewed(self.began)

    def _record(self, session: Session, outcomes: Sequence[Outcome], worker: str) -> None:
        if outcomes:
            s = self.rt.settings
            ledger.record_outcomes(session, outcomes, worker, self.clock(), s.retry_base_seconds,
                                   s.resend_uncertain)
            self.sent_unreported |= any(o.status is DeliveryStatus.SENT for o in outcomes)
        self._record_ops(session, force=False)

    def _record_ops(self, session: Session, force: bool) -> None:
        """The metrics counters and the incident log, in the transaction of the outcomes.

        The counters (and the sending health) are shared rows every pool process
        writes: written with every 30-row chunk they would serialise the processes'
        commits on those rows, so they go with the outcomes at most once a second
        (TALLY_SECONDS), and in a transaction of their own (`force`) when the task
        ends. A process killed in between leaves up to a second of
        sends uncounted in /metrics (the ledger has every one). Cleared only once
        that transaction commits (`_committed`): a transaction the database never got
        is run again with the same counts, and one that landed although its reply
        was lost adds them only once (`_first_write`).
        """
        from service.ops import incidents, metrics

        if not (force or self._ops_due()):
            return
        if self.sent_unreported:  # sending works (again): clears a recorded failure
            health.record_success(session)
        if (self.tally.increments or self.newly_paused) and self._first_write(session):
            metrics.add(session, self.tally.increments)
            for domain in sorted(self.newly_paused):
                incidents.record(session, incidents.DOMAIN_PAUSED, self.clock(),
                                 f"421: paused for {self.rt.settings.domain_slowdown_seconds:g}s",
                                 subject=domain)
        self._ops_staged = True

    def _ops_unwritten(self) -> bool:
        """Counters, incidents or a sending health not yet written."""
        return bool(self.tally.increments or self.newly_paused or self.sent_unreported)

    def _ops_due(self) -> bool:
        """The counters or the incident log are to be written with the next outcomes."""
        return bool(self.newly_paused) or time.monotonic() - self.tally_written >= TALLY_SECONDS

    def _outcome(self, recipient: Recipient, result: Result) -> Outcome:
        if result.slows_domain:
            self.throttle.pause_domain(recipient.domain)
            if recipient.domain not in self.newly_paused:
                log.warning("%s answered 421: paused for everybody", recipient.domain)
            self.newly_paused.add(recipient.domain)
        return Outcome(recipient.delivery_id, DeliveryStatus(result.kind), result.code,
                       result.text, suppress=result.mailbox_gone)

    def _connected(self) -> bool:
        c = self.connection
        if c.is_open() and time.monotonic() - c.last_used > IDLE_CHECK_SECONDS and not c.alive():
            c.close()
        if c.is_open():
            return True
        try:
            c.open()
        except SmtpError as exc:
            log.warning("SMTP connection failed: %s", exc)
            self.connect_error = str(exc)
            return False
        return True

    def _still_held(self, issue_id: int, worker: str) -> bool:
        return self._db(lambda session: ledger.claim_held(session, issue_id, worker))

    def _skip_paused_domains(self, chunk: list[Recipient],
                             worker: str) -> list[Recipient]:
        paused = self.throttle.paused_until({r.domain for r in chunk})
        if not paused:
            return chunk
        outcomes = [Outcome(r.delivery_id, DeliveryStatus.DEFERRED, 421,
                            f"domain {r.domain} paused after a 421",
                            retry_at=datetime.fromtimestamp(paused[r.domain], UTC), attempted=False)
                    for r in chunk if r.domain in paused]
        self._db(lambda session: self._record(session, outcomes, worker))
        return [r for r in chunk if r.domain not in paused]

    def _defer_all(self, chunk: Sequence[Recipient], worker: str, lease: timedelta,
                   reason: str) -> None:
        """The server refused the connection: nothing was sent; retry these with back-off."""
        from service.ops import incidents

        detail = self.connect_error or reason

        def defer(session: Session) -> None:
            health.record_failure(session, detail, self.clock())
            if self._first_write(session):
                incidents.record(session, incidents.CONNECTION_FAILED, self.clock(), detail,
                                 subject=self.rt.settings.smtp.host)
            ours = ledger.mark_sending(session, [r.delivery_id for r in chunk], worker, None, lease)
            outcomes = [Outcome(i, DeliveryStatus.DEFERRED, None, detail) for i in sorted(ours)]
            self._record(session, outcomes, worker)

        self._db(defer)

    def _release(self, ids: Sequence[int], worker: str) -> None:
        if ids:
            self._db(lambda session: ledger.release(session, ids, worker, self.clock()))


class BuildAhead:
    """Builds messages (rendered and, with DKIM, signed) ahead of their chunk.

    `start(rows)` names the next chunk's rows; `build_some` builds one of them, and
    runs while the current chunk is on the wire and no reply is in
    (`send_interleaved`'s `between`), so building costs the connections no time.
    `take(chunk)` returns the chunk's envelopes, building whatever was not built
    ahead (rows skipped meanwhile, a failure). Building touches no row: an error
    while building ahead is met again, before any row is marked, when the chunk is
    built in its turn.
    """

    def __init__(self, agent: DeliveryAgent, message: IssueMessage) -> None:
        self.agent = agent
        self.message = message
        self.ready: dict[int, Envelope] = {}
        self.waiting: list[Recipient] = []

    def _build(self, row: Recipient, now: datetime) -> Envelope:
        m = self.message
        return Envelope(m.envelope_sender(row.delivery_id), row.email, m.render_parts(row, now),
                        dot_free=True)

    def start(self, rows: Sequence[Recipient]) -> None:
        self.waiting = list(reversed(rows))

    def build_some(self) -> bool:
        """Build the next waiting message; False when none is left to build."""
        if not self.waiting:
            return False
        row = self.waiting.pop()
        try:
            self.ready[row.delivery_id] = self._build(row, self.agent.clock())
        except Exception:
            self.waiting = []
        return True

    def take(self, chunk: Sequence[Recipient]) -> list[Envelope]:
        now = self.agent.clock()
        ready, self.ready, self.waiting = self.ready, {}, []
        return [ready.get(r.delivery_id) or self._build(r, now) for r in chunk]


# Keyed by the runtime's identity (Runtime is not hashable); a worker process has one.
_agents: dict[int, tuple[weakref.ref[Runtime], DeliveryAgent]] = {}


def agent_for(rt: Runtime) -> DeliveryAgent:
    """The process's agent for this runtime: its SMTP connection outlives each task."""
    found = _agents.get(id(rt))
    if found is None or found[0]() is not rt:
        found = _agents[id(rt)] = (weakref.ref(rt), DeliveryAgent(rt))
    return found[1]


def close_connections() -> None:
    """QUIT every SMTP session this process holds: the worker process is stopping."""
    for _ref, agent in list(_agents.values()):
        agent.idle.close()


def send_batches(rt: Runtime, issue_id: int) -> BatchReport:
    """The `chapar.send_batch` task: send what is due; ring again if time ran out."""
    from service.web.logs import log_ids

    with log_ids(issue_id=issue_id):
        report = agent_for(rt).deliver(issue_id)
    if report.more:
        try:
            rt.ring("chapar.send_batch", issue_id)
        except Exception as exc:  # the broker is down: the rows are due, the sweeper rings
            log.warning("could not ring for issue %s again: %s", issue_id, exc)
    return report
