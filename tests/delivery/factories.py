"""Test data for the delivery area: issues with per-recipient markers, many subscribers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from service.delivery import ledger
from service.delivery.models import Delivery
from service.digests.models import Issue, IssueArticle, IssueStatus
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL
from service.subscribers.models import Status, Subscriber
from tests.digests.factories import article

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


def issue_html(number: int) -> str:
    body = "<p>گزارش‌های هفته درباره‌ی برنامه‌ی هسته‌ای</p>" * 200
    return (f'<html lang="fa" dir="rtl"><body dir="rtl"><div dir="rtl">'
            f"<h1>شماره {number}</h1>{body}"
            f'<a href="{PREFERENCES_URL}">تنظیمات</a> <a href="{UNSUBSCRIBE_URL}">لغو اشتراک</a>'
            f"</div></body></html>")


def make_issue(session: Session, number: int = 1, status: IssueStatus = IssueStatus.DRAFT) -> Issue:
    issue = Issue(
        number=number, subject=f"خبرنامه هفتگی، شماره {number}", preheader="خبرهای هفته",
        window_start=NOW - timedelta(days=7), window_end=NOW, status=status,
        html=issue_html(number),
        text=f"خبرهای هفته\nتنظیمات: {PREFERENCES_URL}\nلغو اشتراک: {UNSUBSCRIBE_URL}\n",
        created_at=NOW,
    )
    session.add(issue)
    session.flush()
    # One article, so the pre-send checks see an issue with something in it.
    lead = article(session, NOW - timedelta(hours=1))
    session.add(IssueArticle(issue_id=issue.id, article_id=lead.id, position=1, title=lead.title,
                             summary_html=lead.summary_html, url=lead.url, image_url=None,
                             section=None, author=None, published_at=lead.published_at))
    session.flush()
    return issue


def add_subscribers(session: Session, count: int, *, domain: str = "example.test",
                    prefix: str = "reader", status: Status = Status.CONFIRMED) -> list[str]:
    """Insert `count` subscribers in one statement; returns their addresses."""
    emails = [f"{prefix}{i}@{domain}" for i in range(count)]
    if emails:
        session.execute(insert(Subscriber), [
            {"email": e, "status": status, "created_at": NOW, "updated_at": NOW,
             "confirmed_at": NOW if status is Status.CONFIRMED else None,
             "consent_source": "test", "consent_at": NOW, "soft_bounces": 0}
            for e in emails
        ])
    return emails


def assert_counts_kept(session: Session) -> None:
    """`delivery_counts` (kept by triggers) says what counting the ledger's rows says."""
    direct: dict[int, Counter[str]] = {}
    for issue_id, status, number, duplicates in session.execute(
        select(Delivery.issue_id, Delivery.status, func.count(), func.sum(Delivery.uncertain_count))
        .group_by(Delivery.issue_id, Delivery.status)
    ):
        counter = direct.setdefault(issue_id, Counter())
        counter[getattr(status, "value", status)] += number
        counter["possible_duplicates"] += int(duplicates or 0)
    kept = ledger.counted(session, session.scalars(select(Issue.id)))
    def nonzero(counters: dict[int, Counter[str]]) -> dict[int, dict[str, int]]:
        return {i: {k: n for k, n in c.items() if n} for i, c in counters.items()
                if any(c.values())}

    assert nonzero(kept) == nonzero(direct)


def assert_only_waiting_rows_have_a_next_attempt(session: Session) -> None:
    """`next_attempt_at` is set exactly on rows waiting for a retry (ix_deliveries_due_again)."""
    found = session.execute(
        select(Delivery.status, func.count()).where(Delivery.next_attempt_at.is_not(None))
        .group_by(Delivery.status)).all()
    assert {getattr(s, "value", s) for s, _ in found} <= {"queued", "deferred"}, found
