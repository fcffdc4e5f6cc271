"""Where mail goes and where it fails: the figures behind the console's send and failure panels.

All read from the deliveries ledger (the truth) with a handful of grouped queries;
none loads rows one by one, so they stay cheap at a million rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import Bounce, Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus

FAILING = (DeliveryStatus.DEFERRED, DeliveryStatus.FAILED, DeliveryStatus.UNCERTAIN)
GMAIL_COMPLAINT_TARGET = 0.001  # Gmail's bulk sender guideline: stay under 0.1 %
GMAIL_COMPLAINT_LIMIT = 0.003  # and never reach 0.3 %


@dataclass(frozen=True)
class ReplyCount:
    code: int
    count: int

    @property
    def klass(self) -> str:
        return f"{self.code // 100}xx"


@dataclass(frozen=True)
class DomainTrouble:
    domain: str
    deferred: int
    failed: int
    uncertain: int
    last_code: int | None


@dataclass(frozen=True)
class DeferredDue:
    due_now: int
    within_10_minutes: int
    within_hour: int
    later: int
    next_at: datetime | None

    @property
    def total(self) -> int:
        return self.due_now + self.within_10_minutes + self.within_hour + self.later


@dataclass(frozen=True)
class IssueRates:
    number: int
    sent: int
    bounces: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0


@dataclass
class Failures:
    replies: list[ReplyCount] = field(default_factory=list)
    domains: list[DomainTrouble] = field(default_factory=list)
    deferred: DeferredDue | None = None


def oldest_due(session: Session, now: datetime) -> datetime | None:
    """Since when the oldest row a worker could take now has been waiting (sending issues only)."""
    found = [at for issue_id in session.scalars(select(Issue.id)
                                                .where(Issue.status == IssueStatus.SENDING))
             if (at := ledger.waiting_since(session, issue_id, now)) is not None]
    return _aware(min(found)) if found else None


def last_progress(session: Session, issue_id: int) -> datetime | None:
    """When a row of the issue was last sent."""
    return _aware(session.scalar(select(func.max(Delivery.sent_at))
                                 .where(Delivery.issue_id == issue_id)))


def failures(session: Session, issue_id: int, now: datetime, domains: int = 10) -> Failures:
    """SMTP replies by code, the domains with most trouble, and when deferred rows are due."""
    replies = [ReplyCount(int(code or 0), int(n)) for code, n in session.execute(
        select(Delivery.last_code, func.count()).where(Delivery.issue_id == issue_id,
                                                       Delivery.last_code.is_not(None))
        .group_by(Delivery.last_code).order_by(Delivery.last_code))]
    # No index names `status` (HOT updates): the counts say which failing rows there are,
    # and deferred rows are found through the index of rows due again; only failed or
    # uncertain rows, when there are some, cost a pass over the issue's rows.
    kept = ledger.counts(session, issue_id)
    failing = [s for s in FAILING if kept[s.value]]
    at = Delivery.next_attempt_at
    troubled = []
    if failing:
        counted = {s: func.sum(case((Delivery.status == s, 1), else_=0)) for s in FAILING}
        rows = (ledger.deferred() if failing == [DeliveryStatus.DEFERRED]
                else (Delivery.status.in_(failing),))
        trouble = session.execute(
            select(Delivery.domain, *counted.values(), func.max(Delivery.last_code))
            .where(Delivery.issue_id == issue_id, *rows)
            .group_by(Delivery.domain).order_by(func.count().desc(), Delivery.domain)
            .limit(domains))
        troubled = [DomainTrouble(d, int(a or 0), int(b or 0), int(c or 0), code)
                    for d, a, b, c, code in trouble]
    deferred = session.execute(
        select(func.sum(case((or_(at.is_(None), at <= now), 1), else_=0)),
               func.sum(case(((at > now) & (at <= now + timedelta(minutes=10)), 1), else_=0)),
               func.sum(case(((at > now + timedelta(minutes=10)) & (at <= now + timedelta(hours=1)),
                              1), else_=0)),
               func.sum(case((at > now + timedelta(hours=1), 1), else_=0)),
               func.min(case((at > now, at), else_=None)))
        .where(Delivery.issue_id == issue_id, *ledger.deferred())).one()
    due_now, soon, within_hour, later = (int(x or 0) for x in deferred[:4])
    due = DeferredDue(due_now, soon, within_hour, later, _aware(deferred[4]))
    return Failures(replies, troubled, due)


LATEST_ISSUES = 5  # the issues the per-issue rates and gauges cover (/metrics, the console)


def latest_issues(session: Session, limit: int = LATEST_ISSUES) -> list[tuple[int, int]]:
    """(id, number) of the latest issues whose send started, newest first."""
    return [(i, n) for i, n in session.execute(
        select(Issue.id, Issue.number).where(Issue.send_started_at.is_not(None))
        .order_by(Issue.id.desc()).limit(limit))]


def issue_rates(session: Session, limit: int = LATEST_ISSUES) -> list[IssueRates]:
    """Bounce and complaint rates of the latest issues sent (reports matched by VERP)."""
    issues = latest_issues(session, limit)
    if not issues:
        return []
    ids = [i for i, _ in issues]
    sent = {i: counter[DeliveryStatus.SENT.value]
            for i, counter in ledger.counted(session, ids).items()}
    reports: dict[tuple[int, str], int] = {}
    for issue_id, kind, n in session.execute(
            select(Delivery.issue_id, Bounce.kind, func.count(func.distinct(Bounce.delivery_id)))
            .join(Delivery, Delivery.id == Bounce.delivery_id)
            .where(Delivery.issue_id.in_(ids)).group_by(Delivery.issue_id, Bounce.kind)):
        reports[(issue_id, kind)] = int(n)
    return [IssueRates(number, int(sent.get(i, 0)),
                       reports.get((i, "hard"), 0) + reports.get((i, "soft"), 0),
                       reports.get((i, "complaint"), 0))
            for i, number in issues]


def _aware(moment: datetime | None) -> datetime | None:
    """Aggregates come back without the column type's conversion on SQLite."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
