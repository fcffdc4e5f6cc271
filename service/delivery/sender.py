"""The worker side of a send: claim a batch, send it in chunks, record every outcome.

Per chunk of recipients: the rows are marked `sending` (one UPDATE, committed), the
messages go out over the process's persistent connection, and the outcomes are
written (one UPDATE for all that were sent, committed). A worker killed in between
leaves at most one chunk `sending`; the sweeper turns those into recorded
uncertain rows. Everything else a crash leaves behind is merely claimed and is
claimed again when its lease runs out.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import health, ledger
from service.delivery.dkim import DkimKeyError, DkimSigner
from service.delivery.ledger import Outcome
from service.delivery.message import IssueMessage, Recipient
from service.delivery.models import DeliveryStatus
from service.delivery.throttle import Throttle
from service.delivery.transport import Envelope, Result, SmtpConnection, SmtpError, connection_for
from service.digests.models import Issue, IssueStatus
from service.instance_keys import MESSAGE_ID, instance_key
from service.runtime import Runtime

log = logging.getLogger(__name__)
CHUNK = 100  # rows marked `sending` at once: the most a killed worker can leave uncertain
IDLE_CHECK_SECONDS = 20.0
QUIT_WAIT_SECONDS = 10.0  # a stopping worker waits this long for a send to finish its chunk
TASK_BUDGET_SECONDS = 120.0  # then the task rings again and returns, so no task runs for hours


@dataclass
class BatchReport:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    finished: bool = False
    more: bool = False  # stopped early with work left: ring again


class IdleCloser:
    """Says QUIT on a connection left unused for `seconds` (RFC 5321 4.1.1.10).

    Without it a worker between sends holds its session until the server times it
    out (Postfix logs "timeout after END-OF-MESSAGE" after 300 s). A timer thread
    closes it while the process waits for its next task; `use()` holds the lock, so
    the timer never closes a connection in the middle of a send.
    """

    def __init__(self, connection: SmtpConnection, seconds: float) -> None:
        self.connection = connection
        self.seconds = seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    @contextmanager
    def use(self) -> Iterator[SmtpConnection]:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                yield self.connection
            finally:
                if self.connection.is_open():
                    self._timer = threading.Timer(self.seconds, self._close_if_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            c = self.connection
            # A timer that fired while a send held the lock finds the connection fresh.
            if c.is_open() and time.monotonic() - c.last_used >= self.seconds:
                c.close()

    def close(self) -> None:
        """QUIT now (the worker is stopping); waits briefly for a send in progress."""
        if self._lock.acquire(timeout=QUIT_WAIT_SECONDS):
            try:
                if self._timer is not None:
                    self._timer.cancel()
                self.connection.close()
            finally:
                self._lock.release()


class DeliveryAgent:
    """One per worker process: its SMTP connection, its throttle, its built messages."""

    def __init__(self, rt: Runtime, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.rt = rt
        self.clock = clock
        self.connection = connection_for(rt.settings)
        self.idle = IdleCloser(self.connection, rt.settings.smtp_idle_seconds)
        self.throttle = Throttle(rt.settings)
        self.messages: dict[int, IssueMessage] = {}
        self.dkim: DkimSigner | None = None
        self.dkim_loaded = False
        self.connect_error = ""
        from service.ops.metrics import SendTally

        self.tally = SendTally()  # added to the metrics counters with the outcomes it counts
        self.newly_paused: set[str] = set()  # domains that answered 421, for the incident log

    def load_dkim(self) -> bool:
        """Load the DKIM key once; False (and the failure recorded) when it cannot be used."""
        if not self.dkim_loaded:
            try:
                self.dkim = DkimSigner.from_settings(self.rt.settings)
            except DkimKeyError as exc:
                log.warning("cannot send: %s", exc)
                with unit_of_work(self.rt.sessions) as session:
                    health.record_failure(session, str(exc), self.clock())
                return False
            self.dkim_loaded = True
        return True

    def name(self) -> str:
        """A fresh claimant name per batch: a lease is never confused across tasks."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def message_for(self, issue_id: int) -> IssueMessage | None:
        if issue_id not in self.messages:
            with self.rt.sessions() as session:
                issue = session.get(Issue, issue_id)
                if issue is None:
                    return None
                s = self.rt.settings
                self.messages = {issue_id: IssueMessage(
                    issue_number=issue.number, subject=issue.subject, html=issue.html,
                    text=issue.text, from_name=s.from_name, from_address=s.from_address,
                    list_name=s.list_name, list_id=s.list_id, public_url=s.public_url,
                    verp_domain=s.verp_domain, tokens=self.rt.tokens,
                    secret=instance_key(session, MESSAGE_ID).hex(),
                    dkim=self.dkim, click_mode=s.track_clicks,
                    articles=[(a.article_id, a.url) for a in issue.articles],
                )}
        return self.messages[issue_id]

    def deliver(self, issue_id: int, *, budget: float = TASK_BUDGET_SECONDS) -> BatchReport:
        """Send due rows of one issue until none is left or the time budget is spent."""
        with self.idle.use():
            return self._deliver(issue_id, budget)

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
            with unit_of_work(self.rt.sessions) as session:
                batch = ledger.claim_batch(session, issue_id, worker, self.clock(),
                                           s.send_batch_size, lease)
            if not batch:
                with unit_of_work(self.rt.sessions) as session:
                    report.finished = ledger.finish_if_done(session, issue_id, self.clock())
                return report
            report.claimed += len(batch)
            if not self._send_batch(issue_id, message, batch, worker, lease, report):
                with unit_of_work(self.rt.sessions) as session:  # all rows may have settled
                    report.finished = ledger.finish_if_done(session, issue_id, self.clock())
                return report
            if time.monotonic() - started > budget:
                report.more = True
                return report

    def _send_batch(self, issue_id: int, message: IssueMessage, batch: Sequence[Recipient],
                    worker: str, lease: timedelta, report: BatchReport) -> bool:
        """Send one claimed batch; False when the send must stop (paused, server down).

        One transaction per chunk: it records the previous chunk's outcomes and marks
        this chunk `sending`. Whatever stops the loop, the last outcomes are written.
        """
        unrecorded: list[Outcome] = []
        try:
            return self._send_chunks(issue_id, message, batch, worker, lease, report, unrecorded)
        finally:
            if unrecorded:
                with unit_of_work(self.rt.sessions) as session:
                    self._record(session, unrecorded, worker)

    def _send_chunks(self, issue_id: int, message: IssueMessage, batch: Sequence[Recipient],
                     worker: str, lease: timedelta, report: BatchReport,
                     unrecorded: list[Outcome]) -> bool:
        size = self.throttle.largest_chunk(CHUNK)
        for start in range(0, len(batch), size):
            chunk = list(batch[start:start + size])
            rest = [r.delivery_id for r in batch[start:]]
            chunk = self._skip_paused_domains(chunk, worker)
            if not chunk:
                continue
            if unrecorded and (self.throttle.limited or not self.connection.is_open()):
                # About to wait (rate limit, reconnect): settle the last chunk first, so
                # its rows are not left `sending` long enough to look abandoned.
                with unit_of_work(self.rt.sessions) as session:
                    self._record(session, unrecorded, worker)
                unrecorded.clear()
            self.throttle.acquire(Counter(r.domain for r in chunk))
            if not self._connected():
                self._defer_all(chunk, worker, lease, "cannot connect to the SMTP server")
                self._release(rest[len(chunk):], worker)
                report.outcomes["deferred"] += len(chunk)
                return False
            now = self.clock()
            envelopes = [Envelope(message.envelope_sender(r.delivery_id), r.email,
                                  message.render(r, now))
                         for r in chunk]
            with unit_of_work(self.rt.sessions) as session:
                self._record(session, unrecorded, worker)
                ours = ledger.mark_sending(session, [r.delivery_id for r in chunk], worker,
                                          self.clock(), lease)
            unrecorded.clear()
            if not ours and not self._still_sending(issue_id):  # paused or cancelled
                self._release(rest, worker)
                return False
            mine = [(r, e) for r, e in zip(chunk, envelopes, strict=True) if r.delivery_id in ours]
            began = time.monotonic()
            results = self.connection.send_many([e for _, e in mine])
            self.tally.observe(results, time.monotonic() - began)
            refused = next((r for r in results if r.stage == "mail" and r.kind != "sent"), None)
            if refused is not None:  # the relay refuses our sender: nobody gets mail
                with unit_of_work(self.rt.sessions) as session:
                    health.record_failure(session, f"MAIL FROM refused: {refused.code} "
                                          f"{refused.text}", self.clock())
            outcomes = [self._outcome(r, result) for (r, _), result in zip(mine, results, strict=True)]
            unrecorded.extend(outcomes)
            report.outcomes.update(o.status.value for o in outcomes)
        return True

    def _record(self, session: Session, outcomes: Sequence[Outcome], worker: str) -> None:
        if outcomes:
            s = self.rt.settings
            ledger.record_outcomes(session, outcomes, worker, self.clock(), s.retry_base_seconds,
                                   s.resend_uncertain)
            if any(o.status is DeliveryStatus.SENT for o in outcomes):
                health.record_success(session)
        self._record_ops(session)

    def _record_ops(self, session: Session) -> None:
        """The metrics counters and the incident log, in the transaction of the outcomes."""
        from service.ops import incidents

        self.tally.flush(session)
        for domain in sorted(self.newly_paused):
            log.warning("%s answered 421: paused for everybody", domain)
            incidents.record(session, incidents.DOMAIN_PAUSED, self.clock(),
                             f"421: paused for {self.rt.settings.domain_slowdown_seconds:g}s",
                             subject=domain)
        self.newly_paused.clear()

    def _outcome(self, recipient: Recipient, result: Result) -> Outcome:
        if result.slows_domain:
            self.throttle.pause_domain(recipient.domain)
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

    def _still_sending(self, issue_id: int) -> bool:
        with self.rt.sessions() as session:
            return session.scalar(select(Issue.status).where(Issue.id == issue_id)) is IssueStatus.SENDING

    def _skip_paused_domains(self, chunk: list[Recipient],
                             worker: str) -> list[Recipient]:
        paused = self.throttle.paused_until({r.domain for r in chunk})
        if not paused:
            return chunk
        outcomes = [Outcome(r.delivery_id, DeliveryStatus.DEFERRED, 421,
                            f"domain {r.domain} paused after a 421",
                            retry_at=datetime.fromtimestamp(paused[r.domain], UTC))
                    for r in chunk if r.domain in paused]
        with unit_of_work(self.rt.sessions) as session:
            self._record(session, outcomes, worker)
        return [r for r in chunk if r.domain not in paused]

    def _defer_all(self, chunk: Sequence[Recipient], worker: str, lease: timedelta,
                   reason: str) -> None:
        """The server refused the connection: nothing was sent; retry these with back-off."""
        from service.ops import incidents

        detail = self.connect_error or reason
        with unit_of_work(self.rt.sessions) as session:
            health.record_failure(session, detail, self.clock())
            incidents.record(session, incidents.CONNECTION_FAILED, self.clock(), detail,
                             subject=self.rt.settings.smtp.host)
            ours = ledger.mark_sending(session, [r.delivery_id for r in chunk], worker,
                                       self.clock(), lease)
            outcomes = [Outcome(i, DeliveryStatus.DEFERRED, None, detail) for i in sorted(ours)]
            self._record(session, outcomes, worker)

    def _release(self, ids: Sequence[int], worker: str) -> None:
        if ids:
            with unit_of_work(self.rt.sessions) as session:
                ledger.release(session, ids, worker, self.clock())


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
        rt.ring("chapar.send_batch", issue_id)
    return report
