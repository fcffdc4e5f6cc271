"""Articles and issues for digest tests."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy.orm import Session

from service.articles.models import Article
from service.digests.build import build_issue
from service.digests.models import Issue, IssueStatus
from service.settings import Settings

_serial = itertools.count(1)

LONG_SUMMARY = (
    "به گزارش خبرنگار ما، نشست امروز با حضور نمایندگان استان‌ها برگزار شد و درباره "
    "برنامه‌های سال آینده گفتگو شد. گزارش‌ها نشان می‌دهد طرح‌های نیمه‌تمام هسته‌ای و "
    "عمرانی در اولویت قرار دارند و بودجه آن‌ها تا پایان سال تأمین می‌شود. "
)


def article(session: Session, published_at: datetime, *, title: str | None = None,
            section: str | None = None, pinned: bool = False, excluded: bool = False,
            summary_html: str = "خلاصه‌ای کوتاه از خبر.", image_url: str | None = None) -> Article:
    n = next(_serial)
    row = Article(
        guid=f"test-{n}", url=f"https://news.example.com/a/{n}", title=title or f"خبر شمارهٔ {n}",
        summary_html=summary_html, image_url=image_url, section=section, author="نویسنده",
        published_at=published_at, source="test", created_at=published_at, updated_at=published_at,
        pinned=pinned, excluded=excluded,
    )
    session.add(row)
    session.flush()
    return row


def sent_issue(session: Session, settings: Settings, now: datetime) -> Issue | None:
    """Build an issue and mark it as gone out, as a finished send leaves it."""
    issue = build_issue(session, settings, now).issue
    if issue is not None:
        issue.status = IssueStatus.SENT
        issue.send_started_at = issue.finished_at = now
        session.flush()
    return issue
