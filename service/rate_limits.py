"""Moving-window rate limits shared by every process through Redis, or per process.

The subscribe form and the desk's login both count requests per client and per
target; this is the one counter they share. `limits` names its redis-py backed
storage "redis://"; "memory://" is per process, which is right for the embedded
setup where one web process runs.

While Redis is unreachable the limits fail open: the request is let through and the
log says so. Readers can still subscribe and staff can still sign in; the database
holds the second line (one confirmation email per address per day, the login
lock-out), and when the database is down too the page answers 503 anyway.
"""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from service.settings import Settings

log = logging.getLogger(__name__)
REDIS_TIMEOUT_SECONDS = 1.0


class RateLimiter:
    """Counts hits against rules like "10/minute;60/hour"; never fails closed on a Redis outage."""

    def __init__(self, settings: Settings) -> None:
        redis_url = settings.effective_redis_url
        # A Redis that is down refuses at once; one that swallows packets must not hold a
        # page for longer than this before the hit is let through.
        storage = (storage_from_string(redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                       socket_timeout=REDIS_TIMEOUT_SECONDS)
                   if redis_url else storage_from_string("memory://"))
        self._limiter = MovingWindowRateLimiter(storage)

    @staticmethod
    def rules(text: str) -> list[RateLimitItem]:
        return parse_many(text)

    def hit(self, rules: list[RateLimitItem], namespace: str, key: str) -> bool:
        """Count one hit in every window (no short-circuit); False if any window is full.

        If the store cannot be reached the hit is let through and the log says so: the
        callers have a second line of defence in the database (one confirmation email a
        day per address; the login lock-out).
        """
        try:
            return all([self._limiter.hit(rule, namespace, key) for rule in rules])
        except RedisError:
            log.warning("rate limit store unreachable; letting a %s request through", namespace)
            return True
