"""Refreshing the site's feed end to end: HTTP on 127.0.0.1, the database, the Feed row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from service.articles.fetch import AddressPolicy, FetchRefused
from service.articles.models import Article, Feed
from service.articles.refresh import load_feed_file, refresh_configured_feed, refresh_feed
from service.cli import main
from service.db import unit_of_work
from service.runtime import Runtime
from tests.articles.feeds import RSS
from tests.articles.feedserver import FeedServer, Route, feed_server
from tests.conftest import make_settings, truncate_all

NOW = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
SAMPLE = Path(__file__).resolve().parents[2] / "service" / "articles" / "sample" / "feed.xml"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def counts(rt: Runtime) -> tuple[int, Feed | None]:
    with rt.sessions() as session:
        return (session.scalar(select(func.count()).select_from(Article)) or 0,
                session.scalars(select(Feed)).one_or_none())


def test_refresh_merges_then_asks_conditionally(runtime: Runtime, server: FeedServer) -> None:
    server.routes["/feed.xml"] = Route(body=RSS.encode(), etag='"abc"')
    policy = AddressPolicy(frozenset({server.origin}))
    first = refresh_feed(runtime, server.url("/feed.xml"), NOW, policy)
    # The relative link resolves against this server, so its absolute copy on
    # news.example.com is another article here; the two rss-3 entries still merge.
    assert (first.added, first.updated) == (3, 1)
    count, feed = counts(runtime)
    assert count == 3 and feed is not None
    assert feed.etag == '"abc"' and feed.last_status == "ok"

    second = refresh_feed(runtime, server.url("/feed.xml"), NOW, policy)
    assert second.added == second.updated == 0
    assert server.requests[-1][1]["If-None-Match"] == '"abc"'
    count, feed = counts(runtime)
    assert count == 3 and feed is not None and feed.last_status == "not modified"


def test_a_refused_fetch_is_recorded_on_the_feed(runtime: Runtime, server: FeedServer) -> None:
    server.routes["/feed.xml"] = Route(body=RSS.encode())
    with pytest.raises(FetchRefused):
        refresh_feed(runtime, server.url("/feed.xml"), NOW)  # default policy: no loopback
    count, feed = counts(runtime)
    assert count == 0 and feed is not None
    assert feed.last_status == "refused" and "127.0.0.1" in (feed.last_error or "")


@pytest.mark.parametrize("target", ["http://a..b/feed.xml", "http://[::1/feed.xml", "/redirect"])
def test_a_malformed_host_is_a_refusal_recorded_on_the_feed_and_one_line_in_the_cli(
        runtime: Runtime, server: FeedServer, target: str) -> None:
    """Whether the feed URL or its redirect has the bad host, the feed row says refused."""
    server.routes["/redirect"] = Route(302, headers={"Location": "http://a..b/feed.xml"})
    url = server.url(target) if target.startswith("/") else target
    s = runtime.settings
    env = {"CHAPAR_ENVIRONMENT": "test", "CHAPAR_DATABASE_URL": s.effective_database_url,
           "CHAPAR_SECRET_KEY": s.secret_key, "CHAPAR_DATA_DIR": str(s.data_dir),
           "CHAPAR_FEED_ALLOWED_HOSTS": "127.0.0.1"}
    result = CliRunner().invoke(main, ["articles", "fetch", url], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "malformed" in result.stderr, result.stderr
    count, feed = counts(runtime)
    assert count == 0 and feed is not None and feed.url == url
    assert feed.last_status == "refused" and "malformed" in (feed.last_error or "")


def test_the_shipped_sample_feed_loads_clean(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        report = load_feed_file(session, SAMPLE, NOW, runtime.settings.feed_max_bytes)
    assert report.added >= 12 and not report.skipped
    with runtime.sessions() as session:
        rows = list(session.scalars(select(Article)))
    text = " ".join(r.title + r.summary_html + (r.section or "") + (r.author or "") for r in rows)
    assert not set(text) & set("\u064a\u0643" + "".join(chr(0x0660 + i) for i in range(10)))
    assert "\u200c" in text
    assert all(r.url.startswith("https://news.example.com/") for r in rows)
    assert all("utm_" not in r.url and "fbclid" not in r.url for r in rows)


@pytest.mark.parametrize("allowed", ["", "10.0.0.5", "127.0.0.1"])
def test_the_configured_refresh_follows_feed_allowed_hosts(
        database_url: str, tmp_path: Path, server: FeedServer, allowed: str) -> None:
    """The beat's refresh fetches a feed on 127.0.0.1 only when the operator listed it."""
    server.routes["/feed.xml"] = Route(body=RSS.encode())
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                             feed_url=server.url("/feed.xml"), feed_allowed_hosts=allowed))
    truncate_all(rt)
    try:
        if allowed == "127.0.0.1":
            report = refresh_configured_feed(rt, NOW)
            assert report is not None and report.added == 3
            count, feed = counts(rt)
            assert count == 3 and feed is not None and feed.last_status == "ok"
        else:
            with pytest.raises(FetchRefused):
                refresh_configured_feed(rt, NOW)
            count, feed = counts(rt)
            assert count == 0 and feed is not None and feed.last_status == "refused"
            assert server.requests == []
    finally:
        truncate_all(rt)
        rt.close()
