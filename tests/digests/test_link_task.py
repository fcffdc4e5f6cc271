"""The link checks as the desk starts them: a real worker process takes `chapar.check_links`."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from service.articles.ingest import make_article, upsert_articles
from service.clock import utcnow
from service.db import unit_of_work
from service.digests import checks, links
from service.digests.build import build_issue
from service.digests.models import LinkCheck
from service.runtime import Runtime
from tests.articles.feedserver import FeedServer, Route, feed_server
from tests.conftest import make_settings, truncate_all
from tests.support.processes import start_worker

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        s.routes["/news/1"] = Route(body=b"<html>ok</html>")
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stored_states(rt: Runtime, issue_id: int) -> dict[str, str]:
    """The stored answers once none is pending (or whatever is there after a minute)."""
    deadline = time.monotonic() + 60
    while True:
        with rt.sessions() as session:
            rows = {r.url: r.state for r in session.scalars(
                select(LinkCheck).where(LinkCheck.issue_id == issue_id))}
        if (rows and links.PENDING not in rows.values()) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_a_worker_fetches_the_links_and_the_report_names_the_broken_ones_article(
        backend: str, database_url: str, redis_db: str, tmp_path: Path, server: FeedServer) -> None:
    broker = redis_db if backend == "postgresql" else ""
    if broker:
        Redis.from_url(broker).flushdb()
    # The guard refuses loopback; the allowed-hosts setting lets the worker reach 127.0.0.1.
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url, broker_url=broker,
                                             feed_allowed_hosts="127.0.0.1", feed_timeout_seconds=5))
    truncate_all(rt)
    dead = f"http://127.0.0.1:{closed_port()}/news/2"
    with unit_of_work(rt.sessions) as session:
        upsert_articles(session, [
            make_article(url=server.url("/news/1"), title="خبر زنده", summary="<p>خلاصه</p>",
                         published_at=NOW - timedelta(hours=1), source="test"),
            make_article(url=dead, title="خبر پیوند شکسته", summary="<p>خلاصه</p>",
                         published_at=NOW - timedelta(hours=2), source="test"),
        ], NOW)
        issue = build_issue(session, rt.settings, NOW).issue
        assert issue is not None
        issue_id = issue.id
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        assert checks.start_link_checks(rt, issue_id, utcnow()) == 2
        states = stored_states(rt, issue_id)
        assert states == {server.url("/news/1"): links.OK, dead: links.BROKEN}, worker.tail()
        assert [path for path, _ in server.requests] == ["/news/1"]
        with rt.sessions() as session:
            issue = session.get_one(type(issue), issue_id)
            report = checks.run_checks(rt, session, issue, utcnow(), fetch_links=False)
        broken = [i for i in report.items if i.code == "links.broken"]
        assert len(broken) == 1 and "خبر پیوند شکسته" in broken[0].detail
        assert report.links_pending == 0 and not report.blocked
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()
