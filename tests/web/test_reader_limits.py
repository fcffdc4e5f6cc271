"""Rate limits shared through Redis, and a flood of requests for one address."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from service.runtime import Runtime
from service.subscribers.models import Status
from service.subscribers.store import find_by_email
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.subscribers.rings import rung
from tests.support.smtp import SmtpRecorder


def forget_limits(redis_url: str) -> None:
    """Drop earlier tests' counts; only ours, the database may be shared."""
    client = Redis.from_url(redis_url)
    for key in client.scan_iter(match="*chapar-subscribe-*"):
        client.delete(key)


@pytest.fixture
def limited(database_url: str, redis_db: str, tmp_path: Path,
            smtp_server: SmtpRecorder) -> Iterator[Runtime]:
    """A Runtime whose rate limits live in this run's Redis database, counted from zero."""
    forget_limits(redis_db)
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=database_url, smtp_url=smtp_server.url, redis_url=redis_db,
        subscribe_rate_per_client="3/minute", subscribe_rate_per_address="5/hour",
    ))
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def test_one_client_is_limited_across_web_processes(limited: Runtime) -> None:
    # Two apps stand for two web processes: the count is shared through Redis.
    first = TestClient(create_app(limited), raise_server_exceptions=False)
    second = TestClient(create_app(limited), raise_server_exceptions=False)
    statuses = [
        first.post("/subscribe", data={"email": "a@example.com"}).status_code,
        second.post("/subscribe", data={"email": "b@example.com"}).status_code,
        first.post("/subscribe", data={"email": "c@example.com"}).status_code,
    ]
    assert statuses == [200, 200, 200]
    refused = second.post("/subscribe", data={"email": "d@example.com"})
    assert refused.status_code == 429
    assert "درخواست‌های بیش از اندازه" in refused.text and 'dir="rtl"' in refused.text
    api = first.post("/subscribe", json={"email": "d@example.com"})
    assert api.status_code == 429 and api.json()["error"] == "rate_limited"
    assert len(rung(limited.settings)) == 3
    keys = Redis.from_url(limited.settings.redis_url).keys("*chapar-subscribe-client*")
    assert keys, "the per-client limit should be counted in Redis"


def test_a_flood_for_one_address_yields_one_confirmation(database_url: str, redis_db: str,
                                                         tmp_path: Path) -> None:
    """Many browsers at once (and many clients) asking for one stranger's address."""
    forget_limits(redis_db)
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=database_url, redis_url=redis_db,
        subscribe_rate_per_client="1000/minute", subscribe_rate_per_address="1000/hour",
    ))
    truncate_all(rt)
    app = create_app(rt)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def flood(index: int) -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            start.wait()
            for _ in range(3):
                email = "Victim@Example.com" if index % 2 else "victim@example.COM"
                response = client.post("/subscribe", data={"email": email})
                with lock:
                    answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert len(answers) == 72
        assert {status for status, _ in answers} == {200}
        assert len({text for _, text in answers}) == 1
        with rt.sessions() as session:
            victim = find_by_email(session, "victim@example.com")
            assert victim is not None and victim.status is Status.PENDING
        assert rung(rt.settings) == [[victim.id]]
    finally:
        truncate_all(rt)
        rt.close()


def test_with_redis_unreachable_readers_still_subscribe_and_get_one_email(
    database_url: str, tmp_path: Path
) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                             redis_url="redis://127.0.0.1:1/0"))
    truncate_all(rt)
    try:
        client = TestClient(create_app(rt), raise_server_exceptions=False)
        for _ in range(3):
            assert client.post("/subscribe", data={"email": "calm@example.com"}).status_code == 200
        with rt.sessions() as session:
            calm = find_by_email(session, "calm@example.com")
            assert calm is not None
        assert rung(rt.settings) == [[calm.id]]  # the database still says: one a day
    finally:
        truncate_all(rt)
        rt.close()


def test_past_the_per_address_limit_the_address_is_left_alone(database_url: str, redis_db: str,
                                                              tmp_path: Path) -> None:
    forget_limits(redis_db)
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=database_url, redis_url=redis_db,
        subscribe_rate_per_client="100/minute", subscribe_rate_per_address="2/hour",
    ))
    truncate_all(rt)
    try:
        client = TestClient(create_app(rt), raise_server_exceptions=False)
        answers = [client.post("/subscribe", data={"email": "target@example.com", "source": source})
                   for source in ("first", "second", "third")]
        assert {(a.status_code, a.text) for a in answers} == {(answers[0].status_code, answers[0].text)}
        with rt.sessions() as session:
            target = find_by_email(session, "target@example.com")
            assert target is not None
            # Both requests are on record; the third never reached the store.
            assert [c.source for c in target.consents] == ["web:first", "web:second"]
            assert target.consent_source == "web:first"  # no request since overwrote it
            assert [e.kind for e in target.events] == ["subscribe"]
    finally:
        truncate_all(rt)
        rt.close()
