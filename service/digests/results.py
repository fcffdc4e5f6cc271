"""What became of one sent issue: sent, deferred, failed, bounced, complaints, unsubscribes.

One function, `issue_results`, feeds the desk's results pages, the API and
`chapar digest stats`. The ledger (deliveries) says what was sent; the bounce rows
say which of those came back (each references its delivery, hence its issue); an
unsubscribe is the issue's when it came through that issue's own link, which the
reader route records on the subscriber's event as the issue's name.

There is no open count: Apple Mail Privacy Protection fetches every image of every
message, so an open-tracking pixel measures nothing. Clicks on the article links are
counted only when CHAPAR_TRACK_CLICKS is on (service/digests/click_counts.py): every
click (raw), those likely a person's (human), and the others by the reason they were
set aside, in all and per article.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import Bounce, Delivery, DeliveryStatus
from service.digests.click_counts import REASONS
from service.digests.models import Click, Issue, IssueArticle, IssueStatus
from service.digests.render import in_email_order
from service.subscribers.models import SubscriberEvent

UNSUBSCRIBE_EVENT = "unsubscribe"


def unsubscribe_detail(issue_number: int) -> str:
    """How a subscriber's unsubscribe event names the issue whose link was used."""
    return Issue.audit_target_of(issue_number)


@dataclass(frozen=True)
class Figure:
    """A count and its share of a whole (None when the whole is zero)."""

    count: int
    rate: float | None

    @classmethod
    def of(cls, count: int, whole: int) -> Figure:
        return cls(count, round(count / whole, 4) if whole else None)


@dataclass(frozen=True)
class ArticleClicks:
    article_id: int
    title: str
    url: str
    clicks: int
    human_clicks: int


@dataclass(frozen=True)
class ClickFigures:
    """Clicks on the issue's article links: all, likely human, the rest by reason."""

    clicks: int
    human_clicks: int
    filtered: dict[str, int]  # every reason of click_counts.REASONS, zeros included
    articles: list[ArticleClicks]  # in the order the email shows them

    @property
    def most(self) -> int:
        """The largest count of one article, for drawing bars on one scale."""
        return max([1, *(a.clicks for a in self.articles)])


@dataclass(frozen=True)
class IssueResults:
    """The figures of one issue. Delivery outcomes are shares of all its recipients;
    what readers and their mail servers did afterwards is a share of what was sent."""

    issue_number: int
    subject: str
    status: str
    recipients: int
    sent: Figure
    deferred: Figure
    failed: Figure
    pending: Figure  # queued or being sent right now
    bounced: Figure
    bounced_hard: Figure
    bounced_soft: Figure
    complaints: Figure
    unsubscribed: Figure
    click_figures: ClickFigures | None = None  # None: clicks are not counted

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: each figure as {"count", "rate"}; clicks as counts, null when not counted."""
        data = asdict(self)
        clicks = data.pop("click_figures")
        data.update(clicks=None, human_clicks=None, clicks_filtered=None, article_clicks=None)
        if clicks is not None:
            data.update(clicks=clicks["clicks"], human_clicks=clicks["human_clicks"],
                        clicks_filtered=clicks["filtered"], article_clicks=clicks["articles"])
        return data


def click_figures(session: Session, issue: Issue, counting: bool) -> ClickFigures | None:
    """The issue's clicks; None when none were recorded and clicks are not counted now."""
    counts: dict[tuple[int, str | None], int] = {
        (row[0], row[1]): row[2] for row in session.execute(
            select(Click.article_id, Click.filtered, func.count()).where(Click.issue_id == issue.id)
            .group_by(Click.article_id, Click.filtered))
    }
    if not counts and not counting:
        return None
    items = session.scalars(select(IssueArticle).where(IssueArticle.issue_id == issue.id)).all()
    articles = []
    for item in in_email_order(issue, items):
        mine = {reason: n for (article, reason), n in counts.items() if article == item.article_id}
        articles.append(ArticleClicks(item.article_id, item.title, item.url, sum(mine.values()),
                                      mine.get(None, 0)))
    filtered = {reason: sum(n for (_, why), n in counts.items() if why == reason)
                for reason in REASONS}
    return ClickFigures(sum(counts.values()),
                        sum(n for (_, why), n in counts.items() if why is None), filtered, articles)


def issue_results(session: Session, issue: Issue, *, counting_clicks: bool = False) -> IssueResults:
    """The issue's figures as the database has them now; reads only.

    `counting_clicks`: whether clicks are counted now (CHAPAR_TRACK_CLICKS); an issue
    whose clicks were counted when it went out shows them either way."""
    counted = ledger.counts(session, issue.id)
    by_status = {status: counted[status.value] for status in DeliveryStatus}
    recipients = sum(by_status.values())
    sent = by_status.get(DeliveryStatus.SENT, 0)
    # One report per delivery and kind: an MTA may send a "delayed" notice twice.
    by_kind: dict[str, int] = {
        row[0]: row[1] for row in session.execute(
            select(Bounce.kind, func.count(func.distinct(Bounce.delivery_id)))
            .join(Delivery, Delivery.id == Bounce.delivery_id)
            .where(Delivery.issue_id == issue.id).group_by(Bounce.kind))
    }
    hard, soft = by_kind.get("hard", 0), by_kind.get("soft", 0)
    unsubscribed = session.scalar(
        select(func.count(func.distinct(SubscriberEvent.subscriber_id))).where(
            SubscriberEvent.kind == UNSUBSCRIBE_EVENT,
            SubscriberEvent.detail == unsubscribe_detail(issue.number))) or 0
    pending = (by_status.get(DeliveryStatus.QUEUED, 0) + by_status.get(DeliveryStatus.SENDING, 0)
               + by_status.get(DeliveryStatus.UNCERTAIN, 0))
    return IssueResults(
        issue_number=issue.number, subject=issue.subject, status=issue.status.value,
        recipients=recipients,
        sent=Figure.of(sent, recipients),
        deferred=Figure.of(by_status.get(DeliveryStatus.DEFERRED, 0), recipients),
        failed=Figure.of(by_status.get(DeliveryStatus.FAILED, 0), recipients),
        pending=Figure.of(pending, recipients),
        bounced=Figure.of(hard + soft, sent),
        bounced_hard=Figure.of(hard, sent),
        bounced_soft=Figure.of(soft, sent),
        complaints=Figure.of(by_kind.get("complaint", 0), sent),
        unsubscribed=Figure.of(unsubscribed, sent),
        click_figures=click_figures(session, issue, counting_clicks),
    )


SENT_OR_SENDING = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT, IssueStatus.CANCELLED)


def recent_results(session: Session, limit: int = 12, *,
                   counting_clicks: bool = False) -> list[IssueResults]:
    """The last `limit` issues that went out (or began to), oldest first, for a trend."""
    issues = session.scalars(
        select(Issue).where(Issue.status.in_(SENT_OR_SENDING))
        .order_by(Issue.number.desc()).limit(limit)).all()
    return [issue_results(session, issue, counting_clicks=counting_clicks)
            for issue in reversed(issues)]


def issue_by_number(session: Session, number: int) -> Issue | None:
    return session.scalars(select(Issue).where(Issue.number == number)).one_or_none()


def sent_issue_for(session: Session, issue_number: int, subscriber_id: int) -> bool:
    """Whether the issue was addressed to this subscriber: an unsubscribe link's `i`
    is believed only then, so a hand-edited number cannot charge another issue."""
    found = session.scalar(
        select(Delivery.id).join(Issue, Issue.id == Delivery.issue_id)
        .where(Issue.number == issue_number, Delivery.subscriber_id == subscriber_id).limit(1))
    return found is not None
