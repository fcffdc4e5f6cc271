"""Throttles shared through Redis: two workers share one budget and one domain pause."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from service.delivery.throttle import PAUSE_POLL_SECONDS, Throttle, per_second
from tests.conftest import make_settings


class Waited(Exception):
    """Raised by the fake sleep: the throttle decided to wait."""


def refuse_to_sleep(seconds: float) -> None:
    raise Waited(seconds)


def test_two_workers_share_the_hourly_budget_through_redis(redis_db: str, tmp_path: Path) -> None:
    Redis.from_url(redis_db).flushdb()
    settings = make_settings(tmp_path, redis_url=redis_db, send_rate_per_hour=5)
    first = Throttle(settings, sleep=refuse_to_sleep)
    second = Throttle(settings, sleep=refuse_to_sleep)
    first.acquire(Counter({"a.test": 3}))
    second.acquire(Counter({"b.test": 2}))
    with pytest.raises(Waited):
        first.acquire(Counter({"a.test": 1}))
    with pytest.raises(Waited):
        second.acquire(Counter({"c.test": 1}))


def test_per_domain_limit_holds_one_domain_only(redis_db: str, tmp_path: Path) -> None:
    Redis.from_url(redis_db).flushdb()
    settings = make_settings(tmp_path, redis_url=redis_db, domain_rate_per_second=0.001)
    throttle = Throttle(settings, sleep=refuse_to_sleep)
    assert throttle.largest_chunk(50) == 1
    throttle.acquire(Counter({"slow.test": 1}))
    throttle.acquire(Counter({"other.test": 1}))
    with pytest.raises(Waited):
        throttle.acquire(Counter({"slow.test": 1}))


def test_a_421_pause_is_seen_by_every_worker(redis_db: str, tmp_path: Path) -> None:
    Redis.from_url(redis_db).flushdb()
    settings = make_settings(tmp_path, redis_url=redis_db, domain_slowdown_seconds=30)
    Throttle(settings).pause_domain("gmail.test")
    paused = Throttle(settings).paused_until({"gmail.test", "yahoo.test"})
    Redis.from_url(redis_db).flushdb()  # the run's Redis database: no pause left for later tests
    assert set(paused) == {"gmail.test"}


def test_another_process_pause_is_looked_up_once_a_poll(redis_db: str, tmp_path: Path) -> None:
    Redis.from_url(redis_db).flushdb()
    settings = make_settings(tmp_path, redis_url=redis_db, domain_slowdown_seconds=30)
    tick = [1000.0]
    sender, ops = Throttle(settings, monotonic=lambda: tick[0]), Throttle(settings)
    try:
        assert sender.paused_until({"gmail.test"}) == {}
        ops.pause_domain_until("gmail.test", time.time() + 60)
        # Within the poll the sender does not ask Redis again, so it has not seen it yet...
        tick[0] += PAUSE_POLL_SECONDS / 2
        assert sender.paused_until({"gmail.test"}) == {}
        # ...a domain it has not asked about is looked up at once...
        ops.pause_domain_until("yahoo.test", time.time() + 60)
        assert set(sender.paused_until({"gmail.test", "yahoo.test"})) == {"yahoo.test"}
        # ...and after the poll both pauses are seen.
        tick[0] += PAUSE_POLL_SECONDS
        assert set(sender.paused_until({"gmail.test", "yahoo.test"})) == {"gmail.test", "yahoo.test"}
        # A resume counts at once: the rows it made due must not be deferred again until
        # the old end of the pause by a sender that still remembers it.
        ops.resume_domain("gmail.test")
        assert set(sender.paused_until({"gmail.test", "yahoo.test"})) == {"yahoo.test"}
    finally:
        Redis.from_url(redis_db).flushdb()


def test_without_limits_nothing_waits(tmp_path: Path) -> None:
    throttle = Throttle(make_settings(tmp_path), sleep=refuse_to_sleep)
    assert not throttle.limited
    throttle.acquire(Counter({"a.test": 10_000}))
    assert per_second(0) is None and per_second(0.5) is not None
