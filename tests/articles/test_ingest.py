"""Feeds in RSS and Atom become clean articles; duplicates merge, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles.ingest import make_article, parse_feed, upsert_articles
from service.articles.models import Article
from tests.articles.feeds import ATOM, RSS, ZWNJ

NOW = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
FEED_URL = "https://news.example.com/feed.xml"


def stored(session: Session) -> dict[str, Article]:
    return {a.guid: a for a in session.scalars(select(Article))}


def test_rss_entries_are_cleaned_and_links_resolved() -> None:
    articles = {a.guid: a for a in parse_feed(RSS, FEED_URL)}
    first = articles["rss-1"]
    assert first.url == "https://news.example.com/world/nuclear-report"
    assert first.image_url == "https://news.example.com/images/a.jpg"
    assert first.title == f"گزارش{ZWNJ}ها از برنامه هسته{ZWNJ}ای کره؛ ۳ نکته"
    assert first.section == f"بین{ZWNJ}الملل" and first.author == "مریم احمدی"
    assert first.published_at == datetime(2026, 11, 26, 16, 10, tzinfo=UTC)
    assert "script" not in first.summary_html and "onclick" not in first.summary_html
    assert "javascript" not in first.summary_html
    assert 'href="https://news.example.com/more"' in first.summary_html
    assert articles["rss-3"].published_at is not None  # the later duplicate carries a date
    assert all(a.url.startswith("https://") for a in articles.values())  # javascript: link left out
    skipped: list[str] = []
    parse_feed(RSS, FEED_URL, skipped=skipped)
    assert len(skipped) == 1 and "url:" in skipped[0]


def test_atom_entries_are_cleaned() -> None:
    articles = {a.guid: a for a in parse_feed(ATOM, "https://atom.example.com/atom.xml")}
    entry = articles["tag:atom.example.com,2026:1"]
    assert entry.title == f"آغاز پیش{ZWNJ}فروش بلیت"
    assert entry.section == "اقتصاد" and entry.author == "علی رضایی"
    assert entry.published_at == datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
    assert "۱۵" in entry.summary_html and "<img" not in entry.summary_html
    updated_only = articles["tag:atom.example.com,2026:2"]
    assert updated_only.published_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_duplicates_by_guid_and_by_url_merge(session: Session) -> None:
    report = upsert_articles(session, parse_feed(RSS, FEED_URL), NOW)
    rows = stored(session)
    assert report.added == 2 and report.updated == 2
    assert set(rows) == {"rss-1", "rss-3"}
    # The copy with tracking parameters updated the first article instead of adding one.
    assert rows["rss-1"].title == "همان خبر با نشانی ردیابی"
    assert rows["rss-3"].url == "https://news.example.com/other-url"
    assert rows["rss-3"].published_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_reading_the_same_feed_twice_adds_nothing(session: Session) -> None:
    upsert_articles(session, parse_feed(ATOM, "https://atom.example.com/atom.xml"), NOW)
    again = upsert_articles(session, parse_feed(ATOM, "https://atom.example.com/atom.xml"), NOW)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
    assert len(stored(session)) == 2


def test_missing_date_means_first_seen_and_is_kept_later(session: Session) -> None:
    item = make_article(url="https://news.example.com/x", title="بی تاریخ", source="test")
    upsert_articles(session, [item], NOW)
    later = datetime(2026, 11, 28, tzinfo=UTC)
    upsert_articles(session, [item], later)
    row = stored(session)["https://news.example.com/x"]
    assert row.published_at == NOW and row.created_at == NOW


def test_times_are_stored_zone_aware_in_utc(session: Session) -> None:
    upsert_articles(session, parse_feed(ATOM, "https://atom.example.com/atom.xml"), NOW)
    session.expire_all()
    for row in stored(session).values():
        assert row.published_at.tzinfo is not None
        assert row.published_at.utcoffset() == UTC.utcoffset(None)


def test_overlong_urls_are_refused_or_dropped() -> None:
    long_path = "https://news.example.com/" + "a" * 2100
    with pytest.raises(ValueError, match=r"^url:"):
        make_article(url=long_path, title="خبر", source="test")
    item = make_article(url="https://news.example.com/x", title="خبر", source="test", image_url=long_path)
    assert item.image_url is None
