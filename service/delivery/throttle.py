"""Sending speed limits shared by every worker: global, per receiving domain, and 421 pauses.

The counters live in Redis (the `limits` library's fixed windows), so two worker
processes on two machines share one budget. Without Redis (the embedded default
runs a single worker) the counters are per process. A 421 from a receiving domain
pauses that domain for everybody for `domain_slowdown_seconds`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerSecond
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from service.settings import Settings

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)
PAUSE_KEY = "chapar:domain-pause:"
# Another process's pause (a 421 it met, ops' hand brake) is looked up in Redis at most
# this often per domain that was not paused: one lookup a chunk cost a sending process
# 10 us a message. A domain last seen paused is looked up every time, so a resume
# counts at once (the rows it makes due must not be deferred again until the old end).
PAUSE_POLL_SECONDS = 1.0
PAUSE_CACHE_DOMAINS = 10_000  # domains remembered between lookups, to keep memory flat


def per_second(rate: float) -> RateLimitItem | None:
    """A fixed window for `rate` messages a second; fractions become longer windows."""
    if rate <= 0:
        return None
    if rate >= 1:
        return RateLimitItemPerSecond(int(rate), namespace="CHAPAR")
    return RateLimitItemPerSecond(1, max(1, round(1 / rate)), namespace="CHAPAR")


class Throttle:
    """Blocks until a chunk of messages may go; knows which domains are paused."""

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        redis_url = settings.effective_redis_url
        storage = storage_from_string(redis_url or "memory://")
        assert isinstance(storage, Storage)
        self.storage = storage
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.global_limits = [item for item in (
            per_second(settings.send_rate_per_second),
            RateLimitItemPerHour(settings.send_rate_per_hour, namespace="CHAPAR")
            if settings.send_rate_per_hour > 0 else None,
        ) if item is not None]
        self.domain_limit = per_second(settings.domain_rate_per_second)
        self.slowdown = settings.domain_slowdown_seconds
        self.redis_url = redis_url
        self._local_pauses: dict[str, float] = {}
        self._sleep = sleep
        self._monotonic = monotonic
        self._redis: Redis | None = None
        self._shared_pauses: dict[str, float] = {}  # domain -> epoch second its pause ends
        self._looked_up: dict[str, float] = {}  # domain -> monotonic time of its last lookup

    @property
    def limited(self) -> bool:
        return bool(self.global_limits or self.domain_limit)

    def largest_chunk(self, wanted: int) -> int:
        """A chunk no window could ever refuse as a whole."""
        sizes = [wanted] + [item.amount for item in self.global_limits]
        if self.domain_limit is not None:
            sizes.append(self.domain_limit.amount)
        return max(1, min(sizes))

    def acquire(self, domains: Counter[str]) -> None:
        """Wait until these messages (count per receiving domain) fit every limit."""
        if not self.limited:
            return
        total = sum(domains.values())
        for item in self.global_limits:
            self._wait_for(item, total, "global")
        if self.domain_limit is not None:
            for domain, count in domains.items():
                self._wait_for(self.domain_limit, min(count, self.domain_limit.amount), domain)

    def _wait_for(self, item: RateLimitItem, cost: int, key: str) -> None:
        while True:
            try:
                if self.limiter.hit(item, key, cost=cost):
                    return
                reset = self.limiter.get_window_stats(item, key).reset_time
            except Exception as exc:
                log.warning("rate limit store unavailable (%s); waiting one window", exc)
                reset = time.time() + item.get_expiry()
            self._sleep(min(max(0.01, reset - time.time()), float(item.get_expiry())))

    # -- domain pauses after a 421 -------------------------------------------------------
    def pause_domain(self, domain: str) -> None:
        until = time.time() + self.slowdown
        self._local_pauses[domain] = until
        client = self._client()
        if client is not None:
            try:
                client.set(PAUSE_KEY + domain, str(until), px=int(self.slowdown * 1000))
            except Exception as exc:
                log.warning("could not share the pause of %s: %s", domain, exc)

    def paused_until(self, domains: set[str]) -> dict[str, float]:
        """The domains paused now, with the epoch second their pause ends.

        This process's own pauses count at once; another process's pause of a domain
        that was not paused within PAUSE_POLL_SECONDS, and its end at once.
        """
        now = time.time()
        paused = {d: t for d, t in self._local_pauses.items() if t > now and d in domains}
        client = self._client()
        if client is not None and domains:
            self._look_up(client, domains)
            for domain in domains:
                until = self._shared_pauses.get(domain, 0.0)
                if until > now:
                    paused[domain] = max(paused.get(domain, 0.0), until)
        return paused

    def _look_up(self, client: Redis, domains: set[str]) -> None:
        """Read the shared pauses of the domains last seen paused or not looked up lately."""
        tick, now = self._monotonic(), time.time()
        names = sorted(d for d in domains if self._shared_pauses.get(d, 0.0) > now
                       or tick - self._looked_up.get(d, -PAUSE_POLL_SECONDS) >= PAUSE_POLL_SECONDS)
        if not names:
            return
        try:
            values = client.mget([PAUSE_KEY + d for d in names])
        except Exception:
            return  # Redis away: the pauses last seen stand; looked up again next time
        if len(self._looked_up) + len(names) > PAUSE_CACHE_DOMAINS:
            self._looked_up.clear()
            self._shared_pauses.clear()
        for domain, value in zip(names, values, strict=True):
            self._looked_up[domain] = tick
            if value is None:
                self._shared_pauses.pop(domain, None)
            else:
                self._shared_pauses[domain] = float(value)

    def paused_domains(self) -> dict[str, float]:
        """Every domain paused now (shared pauses only), with the epoch second its pause ends."""
        client = self._client()
        if client is None:
            return {}
        now = time.time()
        found: dict[str, float] = {}
        try:
            for key in client.scan_iter(match=PAUSE_KEY + "*", count=500):
                value = client.get(key)
                if value is not None and float(value) > now:
                    name = key.decode() if isinstance(key, bytes) else str(key)
                    found[name.removeprefix(PAUSE_KEY)] = float(value)
        except Exception as exc:
            log.warning("could not read domain pauses: %s", exc)
        return found

    def pause_domain_until(self, domain: str, until: float) -> None:
        """Pause a domain for everybody until `until` (epoch seconds): ops' hand brake."""
        client = self._client()
        if client is None:
            raise RuntimeError("pausing a domain needs Redis (CHAPAR_REDIS_URL)")
        client.set(PAUSE_KEY + domain, str(until), px=max(1, int((until - time.time()) * 1000)))

    def resume_domain(self, domain: str) -> None:
        self._local_pauses.pop(domain, None)
        self._shared_pauses.pop(domain, None)
        client = self._client()
        if client is not None:
            client.delete(PAUSE_KEY + domain)

    def _client(self) -> Redis | None:
        if self.redis_url is None:
            return None
        if self._redis is None:
            from redis import Redis

            self._redis = Redis.from_url(self.redis_url, socket_timeout=2)
        return self._redis
