"""Refresh the site's feed: conditional GET, parse, merge, and remember what we saw.

The network fetch happens outside any database transaction; only the merge and the
feed's bookkeeping (ETag, Last-Modified, last status) are written in one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles.fetch import AddressPolicy, FetchFailed, FetchRefused, fetch
from service.articles.ingest import IngestReport, parse_feed, upsert_articles
from service.articles.models import Feed
from service.db import unit_of_work
from service.runtime import Runtime
from service.settings import Settings

log = logging.getLogger(__name__)


def feed_row(session: Session, url: str) -> Feed:
    """The Feed row for `url`, created if this is its first fetch."""
    feed = session.scalars(select(Feed).where(Feed.url == url)).one_or_none()
    if feed is None:
        feed = Feed(url=url)
        session.add(feed)
        session.flush()
    return feed


def feed_policy(settings: Settings) -> AddressPolicy:
    """Public addresses only, plus the hosts the operator listed in CHAPAR_FEED_ALLOWED_HOSTS."""
    return AddressPolicy.allowing(settings.feed_allowed_hosts)


def refresh_feed(rt: Runtime, url: str, now: datetime,
                 policy: AddressPolicy | None = None) -> IngestReport:
    """Fetch one feed and merge its articles; an unchanged feed (304) merges nothing.

    Without a `policy`, the fetch follows feed_policy(settings). A refused or failed
    fetch is recorded on the feed row and raised again.
    """
    s = rt.settings
    policy = feed_policy(s) if policy is None else policy
    with unit_of_work(rt.sessions) as session:
        feed = feed_row(session, url)
        etag, last_modified = feed.etag, feed.last_modified
    try:
        result = fetch(url, timeout=s.feed_timeout_seconds, max_bytes=s.feed_max_bytes,
                       etag=etag, last_modified=last_modified, policy=policy)
    except (FetchFailed, FetchRefused) as exc:
        with unit_of_work(rt.sessions) as session:
            feed = feed_row(session, url)
            feed.last_fetched_at = now
            feed.last_status = "refused" if isinstance(exc, FetchRefused) else "failed"
            feed.last_error = str(exc)[:2000]
        raise
    report = IngestReport()
    with unit_of_work(rt.sessions) as session:
        if not result.not_modified:
            skipped: list[str] = []
            report = upsert_articles(session, parse_feed(result.content, result.url, url, skipped), now)
            report.skipped.extend(skipped)
        feed = feed_row(session, url)
        feed.etag = result.etag
        feed.last_modified = result.last_modified
        feed.last_fetched_at = now
        feed.last_status = "not modified" if result.not_modified else "ok"
        feed.last_error = None
    log.info("feed %s: %s", url, "not modified" if result.not_modified else report)
    return report


def refresh_configured_feed(rt: Runtime, now: datetime) -> IngestReport | None:
    """The beat's job: refresh CHAPAR_FEED_URL if one is set."""
    if not rt.settings.feed_url:
        return None
    from service.ops import marks

    try:
        report = refresh_feed(rt, rt.settings.feed_url, now, feed_policy(rt.settings))
    except Exception as exc:  # the ops console and the feed alert read the mark
        with unit_of_work(rt.sessions) as session:
            marks.record(session, marks.FEED_REFRESH, now, str(exc) or type(exc).__name__)
        raise
    with unit_of_work(rt.sessions) as session:
        marks.record(session, marks.FEED_REFRESH, now)
    return report


def load_feed_file(session: Session, path: Path, now: datetime, max_bytes: int) -> IngestReport:
    """Merge the articles of a feed file; relative links resolve against the site it names."""
    content = path.read_bytes()
    if len(content) > max_bytes:
        raise ValueError(f"{path} is larger than the {max_bytes} bytes allowed")
    source = f"file:{path.name}"
    skipped: list[str] = []
    report = upsert_articles(session, parse_feed(content, source, source, skipped), now)
    report.skipped.extend(skipped)
    return report
