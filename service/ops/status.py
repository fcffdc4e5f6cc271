"""`chapar status`: what ops need to see at a glance, from the ledger and the broker.

The numbers come from the deliveries ledger (the truth) and the broker (queue
depth, live workers). In a terminal the command shows a live progress bar until
the send finishes; piped, it prints one plain snapshot.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.commands import load_runtime
from service.delivery import health, ledger
from service.delivery.models import PENDING, Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.digests.weekly import current as current_weekly
from service.digests.weekly import describe, next_slot
from service.ops.queues import queue_depths, workers_alive
from service.persian import jalali_date
from service.runtime import Runtime
from service.settings import Settings

RATE_WINDOW = timedelta(seconds=60)


@dataclass
class IssueProgress:
    number: int
    subject: str
    status: str
    counts: dict[str, int]
    rate: float  # messages a second over the last minute
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def total(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "possible_duplicates")

    @property
    def settled(self) -> int:
        return self.total - sum(self.counts[s.value] for s in PENDING)


@dataclass
class Snapshot:
    queues: dict[str, int | None]
    workers: list[str] | None
    issue: IssueProgress | None
    next_slot: str
    problems: list[str] = field(default_factory=list)


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
    if issue.finished_at is not None:  # finished: the average over the whole send
        seconds = (issue.finished_at - started).total_seconds()
        rate = counts["sent"] / max(1.0, seconds)
    else:  # sending: the last minute, or since the start when that was less than a minute ago
        seconds = min(RATE_WINDOW.total_seconds(), (now - started).total_seconds())
        rate = recent / max(1.0, seconds)
    return IssueProgress(issue.number, issue.subject, issue.status.value, counts, rate,
                         issue.send_started_at, issue.finished_at)


def sending_problem(failure: health.SendingFailure, settings: Settings) -> str:
    """«sending is failing since 08:14 (جمعه ۷ آذر ۱۴۰۵, Tehran time): <the last error>»."""
    tz = settings.tz
    since = failure.since.astimezone(tz)
    text = (f"sending is failing since {since:%H:%M} ({jalali_date(since, tz)}, "
            f"{settings.timezone.rpartition('/')[2].replace('_', ' ')} time): {failure.error}")
    if failure.last_at - failure.since >= timedelta(minutes=1):
        text += f" (last seen {failure.last_at.astimezone(tz):%H:%M})"
    return text


def snapshot(rt: Runtime, now: datetime) -> Snapshot:
    problems: list[str] = []
    with rt.sessions() as session:
        progress = current_issue(session, now)
        failure = health.current_failure(session)
        weekly = current_weekly(session, rt.settings)
    if failure is not None:
        problems.append(sending_problem(failure, rt.settings))
    queues = queue_depths(rt.settings, rt.celery)
    if any(v is None for v in queues.values()):
        problems.append("broker unreachable")
    return Snapshot(queues, workers_alive(rt.celery), progress,
                    describe(rt.settings, next_slot(weekly, now)), problems)


def render_text(snap: Snapshot) -> str:
    """A plain snapshot (for pipes, logs and tests)."""
    lines = ["queues: " + ", ".join(f"{q} {'?' if n is None else n}" for q, n in snap.queues.items())]
    if snap.workers is None:
        lines.append("workers: unknown (this broker cannot be asked)")
    else:
        lines.append(f"workers alive: {len(snap.workers)}"
                     + (f" ({', '.join(snap.workers)})" if snap.workers else ""))
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
        if issue.status == IssueStatus.SENT.value:
            lines.append("  finished: no row is pending")
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
    """Queue depth, live workers, and the issue being sent with its counts and rate."""
    rt = load_runtime()
    try:
        if once or not sys.stdout.isatty():
            click.echo(render_text(snapshot(rt, utcnow())))
        else:
            watch(rt)
    finally:
        rt.close()
