"""The feed refresh as beat runs it: a real worker process takes `chapar.refresh_feeds`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from service.articles.models import Article, Feed
from service.runtime import Runtime
from tests.articles.feeds import RSS
from tests.articles.feedserver import FeedServer, Route, feed_server
from tests.conftest import make_settings, truncate_all
from tests.support.processes import start_worker
from worker.app import beat_schedule


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        s.routes["/feed.xml"] = Route(body=RSS.encode())
        yield s


def test_beat_refreshes_the_feed_only_when_one_is_configured(tmp_path: Path) -> None:
    assert "refresh-feeds" not in beat_schedule(make_settings(tmp_path))
    entry = beat_schedule(make_settings(tmp_path, feed_url="https://news.example.com/feed.xml",
                                        feed_refresh_minutes=15))["refresh-feeds"]
    assert entry == {"task": "chapar.refresh_feeds", "schedule": timedelta(minutes=15)}


def refreshed_feed(rt: Runtime) -> Feed | None:
    """The Feed row once a refresh has recorded its outcome (or None after a minute)."""
    deadline = time.monotonic() + 60
    feed: Feed | None = None
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            feed = session.scalars(select(Feed)).one_or_none()
            if feed is not None and feed.last_status:
                return feed
        time.sleep(0.2)
    return feed


def test_a_worker_refreshes_and_the_default_policy_keeps_it_off_loopback(
        backend: str, database_url: str, redis_db: str, tmp_path: Path, server: FeedServer) -> None:
    """The worker fetches with the default policy, so a feed URL on 127.0.0.1 is refused
    and recorded, and the server never sees a request."""
    broker = redis_db if backend == "postgresql" else ""
    if broker:
        Redis.from_url(broker).flushdb()
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url, broker_url=broker,
                                             feed_url=server.url("/feed.xml")))
    truncate_all(rt)
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        rt.ring("chapar.refresh_feeds")
        feed = refreshed_feed(rt)
        assert feed is not None and feed.last_status == "refused", worker.tail()
        assert feed.url == server.url("/feed.xml")
        with rt.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Article)) == 0
        assert server.requests == []
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()


def test_a_worker_refreshes_a_feed_on_a_listed_private_host(
        backend: str, database_url: str, redis_db: str, tmp_path: Path, server: FeedServer) -> None:
    """CHAPAR_FEED_ALLOWED_HOSTS reaches the worker: the feed on 127.0.0.1 is fetched."""
    broker = redis_db if backend == "postgresql" else ""
    if broker:
        Redis.from_url(broker).flushdb()
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url, broker_url=broker,
                                             feed_url=server.url("/feed.xml"),
                                             feed_allowed_hosts="127.0.0.1"))
    truncate_all(rt)
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        rt.ring("chapar.refresh_feeds")
        feed = refreshed_feed(rt)
        assert feed is not None and feed.last_status == "ok", worker.tail()
        with rt.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Article)) == 3
        assert [path for path, _ in server.requests] == ["/feed.xml"]
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()
