"""The state of the queue, the workers and the sends: one function, read by every view.

`snapshot(rt, now)` reads the deliveries ledger (the truth), the broker (queue depth,
the tasks live workers run), the workers' heartbeats, the periodic jobs' marks and
the incident log. `chapar status`, the desk's ops console, /metrics and the alert
emails all call it, so they never disagree. In a terminal `chapar status` shows a
live progress bar until the send finishes; piped, it prints one plain snapshot.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.articles.models import Feed
from service.clock import utcnow
from service.commands import load_runtime
from service.delivery import health, ledger
from service.delivery.models import PENDING, Delivery, DeliveryStatus
from service.delivery.throttle import Throttle
from service.digests.models import Issue, IssueStatus
from service.digests.weekly import current as current_weekly
from service.digests.weekly import describe, next_slot
from service.ops import incidents, mailflow, marks
from service.ops.conditions import Condition, conditions
from service.ops.models import Incident, Mark
from service.ops.queues import queue_depths
from service.ops.workers import ALIVE, WorkerState, active_tasks, states
from service.persian import jalali_date
from service.runtime import Runtime
from service.settings import Settings

RATE_WINDOW = timedelta(seconds=60)
RECOVERY_WINDOW = timedelta(minutes=10)  # recoveries of expired leases shown this long


@dataclass
class IssueProgress:
    number: int
    subject: str
    status: str
    counts: dict[str, int]
    rate: float  # messages a second over the last minute
    started_at: datetime | None
    finished_at: datetime | None
    average: float = 0.0  # messages a second since the start
    last_progress: datetime | None = None
    eta_seconds: float | None = None
    waiting: list[str] = field(default_factory=list)  # why it is slower than it could be
    issue_id: int = 0

    @property
    def total(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "possible_duplicates")

    @property
    def settled(self) -> int:
        return self.total - sum(self.counts[s.value] for s in PENDING)

    @property
    def pending(self) -> int:
        return sum(self.counts[s.value] for s in PENDING)

    @property
    def percent(self) -> float:
        return 100.0 * self.settled / self.total if self.total else 100.0


@dataclass
class Machine:
    """The weekly machine's periodic jobs: when each last ran, and its error."""

    beat_tick: Mark | None = None
    sweeper: Mark | None = None
    feed: Mark | None = None
    feed_url: str = ""
    bounce_poll: Mark | None = None
    bounce_mailbox: bool = False


@dataclass
class Snapshot:
    queues: dict[str, int | None]
    workers: list[WorkerState]
    issue: IssueProgress | None
    next_slot: str
    problems: list[str] = field(default_factory=list)
    read_at: datetime = field(default_factory=utcnow)
    workers_known: bool = True  # False: the broker cannot be asked (filesystem transport)
    oldest_due_at: datetime | None = None
    failures: mailflow.Failures | None = None
    paused_domains: dict[str, datetime] = field(default_factory=dict)
    machine: Machine = field(default_factory=Machine)
    rates: list[mailflow.IssueRates] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    leases: ledger.Leases | None = None
    recoveries: list[Incident] = field(default_factory=list)  # expired leases taken back lately

    @property
    def alive(self) -> list[str]:
        return [w.name for w in self.workers if w.state == ALIVE]


def current_issue(session: Session, now: datetime) -> IssueProgress | None:
    """The issue being sent (or paused); otherwise the last one that was."""
    active = (IssueStatus.SENDING, IssueStatus.PAUSED)
    issue = session.scalars(
        select(Issue).where(Issue.status.in_(active)).order_by(Issue.id.desc()).limit(1)
    ).first() or session.scalars(
        select(Issue).where(Issue.send_started_at.is_not(None)).order_by(Issue.id.desc()).limit(1)
    ).first()
    if issue is None:
        return None
    recent = session.scalar(
        select(func.count()).where(Delivery.issue_id == issue.id,
                                   Delivery.status == DeliveryStatus.SENT,
                                   Delivery.sent_at >= now - RATE_WINDOW)
    ) or 0
    counts = ledger.counts(session, issue.id)
    started = issue.send_started_at or now
    end = issue.finished_at or now
    average = counts["sent"] / max(1.0, (end - started).total_seconds())
    if issue.finished_at is not None:  # finished: the average over the whole send
        rate = average
    else:  # sending: the last minute, or since the start when that was less than a minute ago
        seconds = min(RATE_WINDOW.total_seconds(), (now - started).total_seconds())
        rate = recent / max(1.0, seconds)
    return IssueProgress(issue.number, issue.subject, issue.status.value, counts, rate,
                         issue.send_started_at, issue.finished_at, average,
                         mailflow.last_progress(session, issue.id), issue_id=issue.id)


def explain_wait(progress: IssueProgress, snap: Snapshot, settings: Settings) -> None:
    """The ETA, and why the send waits when it does (paused, no worker, back-off, throttle)."""
    tz = settings.tz
    if progress.status == IssueStatus.PAUSED.value:
        progress.waiting.append("ارسال مکث شده است")
    elif progress.status != IssueStatus.SENDING.value:
        return
    if snap.workers_known and not snap.alive:
        progress.waiting.append("هیچ کارگری زنده نیست")
    deferred = snap.failures.deferred if snap.failures else None
    queued = progress.counts["queued"] + progress.counts["sending"]
    backoff_until = None
    if deferred is not None and deferred.next_at is not None and not queued and not deferred.due_now:
        backoff_until = deferred.next_at
        progress.waiting.append(f"در انتظار تلاش دوباره تا {deferred.next_at.astimezone(tz):%H:%M}")
    for domain, until in sorted(snap.paused_domains.items())[:3]:
        progress.waiting.append(f"دامنهٔ {domain} تا {until.astimezone(tz):%H:%M} مکث شده")
    if settings.send_rate_per_second > 0:
        progress.waiting.append(f"سقف سرعت {settings.send_rate_per_second:g} نامه در ثانیه")
    speed = progress.rate or progress.average
    if progress.pending and speed > 0 and not (snap.workers_known and not snap.alive):
        progress.eta_seconds = progress.pending / speed
        if backoff_until is not None:  # nothing goes before the back-off ends
            progress.eta_seconds += max(0.0, (backoff_until - snap.read_at).total_seconds())


def sending_problem(failure: health.SendingFailure, settings: Settings) -> str:
    """«sending is failing since 08:14 (جمعه ۷ آذر ۱۴۰۵, Tehran time): <the last error>»."""
    tz = settings.tz
    since = failure.since.astimezone(tz)
    text = (f"sending is failing since {since:%H:%M} ({jalali_date(since, tz)}, "
            f"{settings.timezone.rpartition('/')[2].replace('_', ' ')} time): {failure.error}")
    if failure.last_at - failure.since >= timedelta(minutes=1):
        text += f" (last seen {failure.last_at.astimezone(tz):%H:%M})"
    return text


def read_machine(session: Session, settings: Settings) -> Machine:
    found = marks.read(session)
    feed = found.get(marks.FEED_REFRESH)
    if feed is None and settings.feed_url:  # refreshed before marks existed: the feed's own row
        row = session.scalar(select(Feed).where(Feed.url == settings.feed_url))
        if row is not None and row.last_fetched_at is not None:
            feed = Mark(name=marks.FEED_REFRESH, last_at=row.last_fetched_at,
                        last_error=row.last_error, failing_since=None)
    return Machine(found.get(marks.BEAT_TICK), found.get(marks.SWEEPER), feed, settings.feed_url,
                   found.get(marks.BOUNCE_POLL), bool(settings.bounce_mailbox_url))


def snapshot(rt: Runtime, now: datetime) -> Snapshot:
    """Everything the ops views show, read once."""
    s = rt.settings
    replies = active_tasks(rt.celery)
    queues = queue_depths(s, rt.celery)
    lost_after = timedelta(seconds=s.ops_worker_lost_seconds)
    with rt.sessions() as session:
        progress = current_issue(session, now)
        failure = health.current_failure(session)
        weekly = current_weekly(session, s)
        snap = Snapshot(queues, states(session, replies, now, lost_after), progress,
                        describe(s, next_slot(weekly, now)), read_at=now,
                        workers_known=replies is not None,
                        oldest_due_at=mailflow.oldest_due(session, now),
                        machine=read_machine(session, s), rates=mailflow.issue_rates(session),
                        incidents=incidents.recent(session))
        if progress is not None:
            snap.failures = mailflow.failures(session, progress.issue_id, now)
        snap.leases = ledger.leases(session, ledger.database_now(session))
        snap.recoveries = [i for i in snap.incidents if i.kind == incidents.LEASES_SWEPT
                           and i.at >= now - RECOVERY_WINDOW]
    snap.paused_domains = {d: datetime.fromtimestamp(t, UTC)
                           for d, t in Throttle(s).paused_domains().items()}
    if progress is not None:
        explain_wait(progress, snap, s)
    if failure is not None:
        snap.problems.append(sending_problem(failure, s))
    if any(v is None for v in queues.values()):
        snap.problems.append("broker unreachable")
    snap.conditions = conditions(snap, s, now)
    snap.problems.extend(c.text for c in snap.conditions)
    return snap


def render_text(snap: Snapshot) -> str:
    """A plain snapshot (for pipes, logs and tests)."""
    lines = ["queues: " + ", ".join(f"{q} {'?' if n is None else n}" for q, n in snap.queues.items())]
    if snap.oldest_due_at is not None:
        age = (snap.read_at - snap.oldest_due_at).total_seconds()
        lines.append(f"oldest due row waits {max(0, age):.0f}s")
    if not snap.workers_known and not snap.workers:
        lines.append("workers: unknown (this broker cannot be asked)")
    else:
        lines.append(f"workers alive: {len(snap.alive)}"
                     + (f" ({', '.join(snap.alive)})" if snap.alive else ""))
        for w in snap.workers:
            if w.state != ALIVE:
                seen = f", last heartbeat {w.last_seen_at:%H:%M:%S} UTC" if w.last_seen_at else ""
                lines.append(f"  worker {w.name}: {w.state}{seen}")
    issue = snap.issue
    if issue is None:
        lines.append("issue: none sent yet")
    else:
        c = issue.counts
        lines.append(f"issue {issue.number} ({issue.status}): {issue.subject}")
        lines.append(
            f"  sent {c['sent']} / pending {c['queued'] + c['sending']} / deferred {c['deferred']}"
            f" / failed {c['failed']} / uncertain {c['uncertain']}"
            f" (possible duplicates on record {c['possible_duplicates']})"
            f" / cancelled {c['cancelled']} of {issue.total}")
        span = "on average" if issue.finished_at else "over the last minute"
        lines.append(f"  rate: {issue.rate:.1f} messages/s {span}")
        if issue.eta_seconds is not None:
            lines.append(f"  eta: {issue.eta_seconds / 60:.0f} min")
        if issue.waiting:
            lines.append("  waiting: " + "; ".join(issue.waiting))
        if issue.status == IssueStatus.SENT.value:
            lines.append("  finished: no row is pending")
    leases = snap.leases
    if leases is not None and (leases.held or leases.expired):
        line = f"leases: {leases.held} rows held by workers ({leases.sending} sending)"
        if leases.expired:
            line += f"; {leases.expired} rows waiting on an expired lease"
            if leases.oldest_expired_at is not None:
                line += f" (since {leases.oldest_expired_at:%H:%M:%S} UTC)"
        lines.append(line)
    for incident in snap.recoveries:
        which = f" (issue id {incident.issue_id})" if incident.issue_id is not None else ""
        lines.append(f"recovered at {incident.at:%H:%M:%S} UTC{which}: {incident.detail}")
    for domain, until in sorted(snap.paused_domains.items()):
        lines.append(f"domain paused: {domain} until {until:%H:%M} UTC")
    lines.append(f"next scheduled issue: {snap.next_slot}")
    lines.extend(f"problem: {p}" for p in snap.problems)
    return "\n".join(lines)


def watch(rt: Runtime, interval: float = 1.0) -> None:
    """A live progress bar in the terminal until the issue stops sending."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:.0f}/s"), TimeElapsedColumn())
    bar = progress.add_task("sending", total=None, rate=0.0)
    with Live(refresh_per_second=4) as live:
        while True:
            snap = snapshot(rt, utcnow())
            issue = snap.issue
            if issue is not None:
                progress.update(bar, description=f"issue {issue.number}", total=issue.total,
                                completed=issue.settled, rate=issue.rate)
            live.update(Group(Text(render_text(snap)), progress))
            if issue is None or issue.status not in (IssueStatus.SENDING.value,):
                return
            time.sleep(interval)


@click.command("status")
@click.option("--once", is_flag=True, help="Print one snapshot even in a terminal.")
def status(once: bool) -> None:
    """Queue depth, workers, the issue being sent with its counts, rate and ETA, and problems."""
    rt = load_runtime()
    try:
        if once or not sys.stdout.isatty():
            click.echo(render_text(snapshot(rt, utcnow())))
        else:
            watch(rt)
    finally:
        rt.close()
