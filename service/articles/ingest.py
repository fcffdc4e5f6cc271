"""Articles in: parse a feed or a CMS batch, clean every field, merge duplicates.

An article is the same article when its GUID matches, or when its URL matches once
tracking parameters are removed; the second arrival updates the first instead of
adding a row.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.articles.clean import (
    absolute_url,
    canonical_url,
    clean_label,
    clean_summary,
    clean_title,
)
from service.articles.models import Article
from service.persian import single_line

URL_MAX = 2000  # the width of the url columns
# Publication times an article may carry; anything outside is a mistake in the source.
PUBLISHED_FROM = datetime(1900, 1, 1, tzinfo=UTC)
PUBLISHED_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ArticleIn:
    """One cleaned article, ready to be stored; `published_at` None means "not given"."""

    guid: str
    url: str
    title: str
    summary_html: str
    image_url: str | None
    section: str | None
    author: str | None
    published_at: datetime | None
    source: str


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # why an entry was not stored

    def __str__(self) -> str:
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"skipped {len(self.skipped)}")


def make_article(
    *,
    url: str,
    title: str,
    source: str,
    guid: str | None = None,
    summary: str = "",
    image_url: str | None = None,
    section: str | None = None,
    author: str | None = None,
    published_at: datetime | None = None,
    base_url: str | None = None,
) -> ArticleIn:
    """Clean one article's fields; raise ValueError naming the field at fault."""
    link = absolute_url(url, base_url)
    if link is None:
        raise ValueError("url: an http or https URL is required")
    canonical = canonical_url(link)
    if len(canonical) > URL_MAX:
        raise ValueError(f"url: longer than {URL_MAX} characters")
    image = absolute_url(image_url, base_url or link)
    clean = clean_title(title)
    if not clean:
        raise ValueError("title: must not be empty")
    if published_at is not None and published_at.tzinfo is None:
        raise ValueError("published_at: must carry a time zone")
    if published_at is not None and not PUBLISHED_FROM <= published_at < PUBLISHED_UNTIL:
        # Also keeps astimezone() below from overflowing at the ends of the calendar.
        raise ValueError(f"published_at: must be in the years {PUBLISHED_FROM.year}"
                         f" to {PUBLISHED_UNTIL.year - 1}")
    return ArticleIn(
        guid=single_line(guid)[:1000] if guid and single_line(guid) else canonical,
        url=canonical,
        title=clean,
        summary_html=clean_summary(summary, base_url or link),
        image_url=image if image and len(image) <= URL_MAX else None,
        section=clean_label(section),
        author=clean_label(author),
        published_at=published_at.astimezone(UTC) if published_at else None,
        source=single_line(source)[:200],
    )


def parse_feed(content: bytes | str, feed_url: str, source: str | None = None,
               skipped: list[str] | None = None) -> list[ArticleIn]:
    """Every usable entry of an RSS 2.0 or Atom document; unusable ones are left out.

    Relative links resolve against `feed_url` when it is a web address, else against
    the site link the feed names. Why an entry was left out is appended to `skipped`.
    """
    web = feed_url.startswith(("http://", "https://"))
    headers = {"content-location": feed_url} if web else {}
    parsed = feedparser.parse(content, response_headers=headers)
    # A feed read from a file resolves relative links against the site it names.
    base_url = feed_url if web else (parsed.feed.get("link") or None)
    articles: list[ArticleIn] = []
    for entry in parsed.entries:
        try:
            articles.append(_entry_article(entry, base_url, source or feed_url))
        except ValueError as exc:
            if skipped is not None:
                skipped.append(f"{str(entry.get('id') or entry.get('link') or '?')[:200]}: {exc}")
    return articles


def _entry_article(entry: Any, base_url: str | None, source: str) -> ArticleIn:
    tags = entry.get("tags") or []
    section = tags[0].get("term") if tags else None
    summary = entry.get("summary") or ""
    return make_article(
        url=entry.get("link") or "",
        title=entry.get("title") or "",
        guid=entry.get("id"),
        summary=summary,
        image_url=_entry_image(entry),
        section=section,
        author=entry.get("author"),
        published_at=_entry_time(entry),
        source=source,
        base_url=base_url,
    )


def _entry_time(entry: Any) -> datetime | None:
    # feedparser gives struct_time in UTC whatever offset the feed wrote.
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _entry_image(entry: Any) -> str | None:
    for key in ("media_content", "media_thumbnail"):
        for item in entry.get(key) or []:
            if item.get("url") and (item.get("medium") in (None, "image")):
                return str(item["url"])
    for link in entry.get("enclosures") or []:
        if str(link.get("type", "")).startswith("image/") and link.get("href"):
            return str(link["href"])
    image = entry.get("image")
    if isinstance(image, dict) and image.get("href"):
        return str(image["href"])
    return None


def find_existing(session: Session, article: ArticleIn) -> Article | None:
    """The stored article with this GUID, else the one with this canonical URL."""
    rows = session.scalars(
        select(Article).where(or_(Article.guid == article.guid, Article.url == article.url))
    ).all()
    for row in rows:
        if row.guid == article.guid:
            return row
    return rows[0] if rows else None


def upsert_articles(session: Session, articles: Iterable[ArticleIn], now: datetime) -> IngestReport:
    """Store new articles and update known ones; duplicates in one batch merge too."""
    report = IngestReport()
    for article in articles:
        row = find_existing(session, article)
        if row is None:
            session.add(Article(
                guid=article.guid, url=article.url, title=article.title,
                summary_html=article.summary_html, image_url=article.image_url,
                section=article.section, author=article.author,
                published_at=article.published_at or now, source=article.source,
                created_at=now, updated_at=now, pinned=False, excluded=False,
            ))
            session.flush()
            report.added += 1
            continue
        if _apply(session, row, article):
            row.updated_at = now
            report.updated += 1
        else:
            report.unchanged += 1
        session.flush()
    return report


def _apply(session: Session, row: Article, article: ArticleIn) -> bool:
    """Copy changed fields onto `row`; True if anything changed."""
    changes: dict[str, object] = {
        "title": article.title, "summary_html": article.summary_html,
        "image_url": article.image_url, "section": article.section, "author": article.author,
    }
    if article.published_at is not None:
        changes["published_at"] = article.published_at
    if row.url != article.url:
        taken = session.scalar(select(Article.id).where(Article.url == article.url))
        if taken is None:
            changes["url"] = article.url
    changed = False
    for name, value in changes.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
