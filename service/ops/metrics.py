"""Prometheus metrics: gauges read from the database at scrape time, counters kept in it.

Every figure comes from the database (or the broker) when Prometheus scrapes, so
any number of web processes, Celery pool processes and hosts agree: there is no
per-process registry to merge. The few true counters (messages sent, SMTP replies,
send durations) are rows of `ops_counters` that workers add to in the same
transaction that records the outcomes they count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import dialect_insert
from service.delivery import ledger
from service.delivery.transport import Result
from service.digests.models import Issue, IssueStatus
from service.ops import mailflow
from service.ops.models import Counter
from service.ops.status import snapshot
from service.runtime import Runtime
from service.subscribers.models import Subscriber

SENT = "messages_sent"
REPLIES = "smtp_replies"
SEND_SECONDS = "send_seconds"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


def labels_text(**labels: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def labels_of(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if part)


def bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


@lru_cache(maxsize=256)
def _reply_labels(code: int) -> str:
    text = str(code)
    return labels_text(**{"class": f"{text[0]}xx", "code": text})


@dataclass
class SendTally:
    """What a worker sent since its last recorded chunk, added to the counters with it."""

    increments: dict[tuple[str, str], float] = field(default_factory=dict)

    def observe(self, results: Sequence[Result], seconds: float) -> None:
        """One chunk handed to the SMTP server: its replies, and seconds per message."""
        if not results:
            return
        sent = 0
        codes: dict[int, int] = {}
        for result in results:
            if result.kind == "sent":
                sent += 1
            if result.code is not None:
                codes[result.code] = codes.get(result.code, 0) + 1
        if sent:
            self._add(SENT, "", sent)
        for code, count in codes.items():
            self._add(REPLIES, _reply_labels(code), count)
        each = seconds / len(results)
        for bound in BUCKETS:
            if each <= bound:
                self._add(SEND_SECONDS + "_bucket", labels_text(le=bucket_label(bound)), len(results))
        self._add(SEND_SECONDS + "_sum", "", seconds)
        self._add(SEND_SECONDS + "_count", "", len(results))

    def _add(self, name: str, labels: str, value: float) -> None:
        self.increments[(name, labels)] = self.increments.get((name, labels), 0.0) + value

    def flush(self, session: Session) -> None:
        add(session, self.increments)
        self.increments.clear()


def add(session: Session, increments: dict[tuple[str, str], float]) -> None:
    """Add to the counters; in key order, so two workers never deadlock on each other's rows."""
    if not increments:
        return
    # One multi-row statement: rows are inserted (and their conflicts updated) in
    # VALUES order, so the key order still holds.
    statement = dialect_insert(session, Counter).values([
        {"name": name, "labels": labels, "value": float(value)}
        for (name, labels), value in sorted(increments.items())])
    session.execute(statement.on_conflict_do_update(
        index_elements=[Counter.name, Counter.labels],
        set_={"value": Counter.value + statement.excluded.value}))


def metric_issue_ids(session: Session) -> list[int]:
    """The issues `chapar_deliveries` covers: the latest sent, as `chapar_complaint_ratio`
    (mailflow.latest_issues), and any still sending or paused. Counting the ledger of
    every issue ever sent at every scrape grows with each send: 135 ms of PostgreSQL
    (three processes) for one issue to a million readers, seconds a scrape after a year."""
    active = session.scalars(select(Issue.id).where(
        Issue.status.in_((IssueStatus.SENDING, IssueStatus.PAUSED))))
    return sorted({*(i for i, _ in mailflow.latest_issues(session)), *active})


class ChaparCollector(Collector):
    """Collects every metric from the database and the broker when Prometheus scrapes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        snap = snapshot(self.rt, utcnow())
        with self.rt.sessions() as session:
            ids = metric_issue_ids(session)
            numbers = {i: n for i, n in session.execute(
                select(Issue.id, Issue.number).where(Issue.id.in_(ids)))}
            deliveries = [(numbers[i], status, n)
                          for i, counter in ledger.counted(session, ids).items()
                          for status, n in counter.items()
                          if status != "possible_duplicates" and n]
            subscribers = session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
            counters = session.execute(select(Counter.name, Counter.labels, Counter.value)).all()
        yield gauge("chapar_deliveries",
                    "Deliveries ledger rows per issue and status, latest issues sent.",
                    ["issue", "status"],
                    (([str(n), getattr(s, "value", str(s))], c) for n, s, c in deliveries))
        yield gauge("chapar_subscribers", "Subscribers per status.", ["status"],
                    (([getattr(s, "value", str(s))], c) for s, c in subscribers))
        yield gauge("chapar_queue_messages", "Messages waiting in each Celery queue.", ["queue"],
                    (([q], n) for q, n in snap.queues.items() if n is not None))
        yield gauge("chapar_workers_alive", "Celery workers alive (answering or heartbeating).",
                    [], [([], len(snap.alive))])
        yield gauge("chapar_workers_lost", "Workers that stopped heartbeating without shutting down.",
                    [], [([], sum(1 for w in snap.workers if w.state == "lost"))])
        due = snap.oldest_due_at
        yield gauge("chapar_oldest_due_row_age_seconds",
                    "How long the oldest row a worker could take now has waited.", [],
                    [([], max(0.0, (snap.read_at - due).total_seconds()) if due else 0.0)])
        issue = snap.issue
        if issue is not None:
            yield gauge("chapar_send_rate_messages_per_second",
                        "Messages sent a second over the last minute, current issue.", ["issue"],
                        [([str(issue.number)], issue.rate)])
        yield gauge("chapar_issue_sending", "1 while an issue is sending (0 when paused or done).",
                    [], [([], 1.0 if issue is not None and issue.status == "sending" else 0.0)])
        yield gauge("chapar_issue_last_sent_timestamp_seconds",
                    "When the current issue last sent a message.", [],
                    [([], issue.last_progress.timestamp())] if issue and issue.last_progress else [])
        m = snap.machine
        for metric, mark, text in (
                ("chapar_beat_last_tick_timestamp_seconds", m.beat_tick, "Last schedule tick."),
                ("chapar_sweeper_last_run_timestamp_seconds", m.sweeper, "Last delivery sweep."),
                ("chapar_feed_last_refresh_timestamp_seconds", m.feed, "Last feed refresh."),
                ("chapar_bounce_poll_last_timestamp_seconds", m.bounce_poll, "Last bounce poll.")):
            yield gauge(metric, text, [], [([], mark.last_at.timestamp())] if mark else [])
        failing = m.feed.failing_since if m.feed else None
        yield gauge("chapar_feed_failing_since_timestamp_seconds",
                    "Since when the feed refresh fails (0: it works).", [],
                    [([], failing.timestamp() if failing else 0.0)] if m.feed else [])
        yield gauge("chapar_complaint_ratio", "Complaints per message sent, latest issues.",
                    ["issue"], (([str(r.number)], r.complaint_rate) for r in snap.rates))
        yield gauge("chapar_bounce_ratio", "Bounces per message sent, latest issues.",
                    ["issue"], (([str(r.number)], r.bounce_rate) for r in snap.rates))
        yield from counter_families(counters)


def gauge(name: str, text: str, labels: list[str],
          samples: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=labels)
    for values, value in samples:
        family.add_metric(values, float(value))
    return family


def counter_families(rows: Sequence[tuple[str, str, float]]) -> Iterator[Metric]:
    values = {(name, labels): value for name, labels, value in rows}
    sent = CounterMetricFamily("chapar_messages_sent", "Messages the SMTP server accepted.")
    sent.add_metric([], values.get((SENT, ""), 0.0))
    yield sent
    replies = CounterMetricFamily("chapar_smtp_replies", "SMTP replies to digest messages.",
                                  labels=["class", "code"])
    for (name, labels), value in sorted(values.items()):
        if name == REPLIES:
            found = labels_of(labels)
            replies.add_metric([found["class"], found["code"]], value)
    yield replies
    buckets = [(bucket_label(b), values.get((SEND_SECONDS + "_bucket",
                                             labels_text(le=bucket_label(b))), 0.0))
               for b in BUCKETS]
    histogram = HistogramMetricFamily("chapar_send_seconds",
                                      "Seconds to hand one message to the SMTP server.")
    histogram.add_metric([], buckets, values.get((SEND_SECONDS + "_sum", ""), 0.0))
    yield histogram
