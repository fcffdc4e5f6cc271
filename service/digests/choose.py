"""Which articles go into the next issue, and the window they were chosen from.

The window runs from where the previous issue's window closed to now, half-open at
the start: (previous end, now]. An article published exactly at a window's end is in
that issue, and the next window starts just after it, so no instant is counted twice
or skipped. An article that was published inside the previous window but reached us
only after that issue was built (the feed is polled, the CMS may push late) is taken
by the next issue, if it is less than a day late. The clock is a parameter.

A window never reaches further back than `max_lookback` (a week by default): the
first issue, and the first after a long pause, carry this week's news, not whatever
old articles the feed still lists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from service.articles.models import Article
from service.digests.models import Issue, IssueArticle

NOTHING_NEW = "no new articles were published since the previous issue"
# How far back a late-fetched article may have been published and still be sent.
LATE_ARRIVAL = timedelta(days=1)
DEFAULT_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class Choice:
    window_start: datetime
    window_end: datetime
    articles: list[Article]

    @property
    def reason(self) -> str | None:
        """Why nothing was chosen, or None when there is something to send."""
        return None if self.articles else NOTHING_NEW


# Only an issue whose send began took its articles to readers; a draft that was never
# sent (an editor's preview, a cancelled draft) leaves its articles and its window free.
WENT_OUT = Issue.send_started_at.is_not(None)


def previous_window_end(session: Session) -> datetime | None:
    """Where the newest sent issue's window closed; None before the first one."""
    value: datetime | None = session.scalar(
        select(Issue.window_end).where(WENT_OUT).order_by(Issue.number.desc()).limit(1)
    )
    return value


def choose_articles(
    session: Session,
    now: datetime,
    *,
    max_articles: int,
    max_per_section: int = 0,
    max_lookback: timedelta = DEFAULT_LOOKBACK,
) -> Choice:
    """The newest unsent articles of the window, pinned first, excluded ones left out.

    The window starts where the previous sent issue's closed, but never earlier than
    `max_lookback` before now: before the first issue, or after a pause, it starts there.
    """
    previous_end = previous_window_end(session)
    earliest = now - max_lookback
    already_sent = exists().where(IssueArticle.article_id == Article.id,
                                  IssueArticle.issue_id == Issue.id, WENT_OUT)
    if previous_end is not None and previous_end >= earliest:
        start = previous_end
        # A late arrival (published just before the previous issue was cut, but fetched
        # after it) would fall between two windows forever; it goes out in this one.
        late_arrival = ((Article.published_at > start - LATE_ARRIVAL)
                        & (Article.created_at > start))
        in_window = (Article.published_at <= now) & ((Article.published_at > start) | late_arrival)
    else:
        start = earliest
        in_window = (Article.published_at <= now) & (Article.published_at > start)
    # An editor's pin reaches back past the window: a pinned article that missed its
    # week still goes out once.
    pinned_before_now = Article.pinned & (Article.published_at <= now)
    query = (
        select(Article)
        .where(~Article.excluded, ~already_sent, or_(in_window, pinned_before_now))
        .order_by(Article.pinned.desc(), Article.published_at.desc(), Article.id.desc())
        # With a section cap some rows are passed over; read a bounded number of them.
        .limit(max_articles * 20 if max_per_section else max_articles)
    )
    chosen: list[Article] = []
    per_section: Counter[str | None] = Counter()
    for article in session.scalars(query):
        if len(chosen) >= max_articles:
            break
        if max_per_section and article.section is not None:
            if per_section[article.section] >= max_per_section:
                continue
            per_section[article.section] += 1
        chosen.append(article)
    return Choice(window_start=start, window_end=now, articles=chosen)
