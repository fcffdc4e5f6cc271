"""Moving-window rate limits shared by every process through Redis, or per process.

The subscribe form and the desk's login both count requests per client and per
target; this is the one counter they share. `limits` names its redis-py backed
storage "redis://"; "memory://" is per process, which is right for the embedded
setup where one web process runs.
"""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from service.settings import Settings

log = logging.getLogger(__name__)


class RateLimiter:
    """Counts hits against rules like "10/minute;60/hour"; never fails closed on a Redis outage."""

    def __init__(self, settings: Settings) -> None:
        redis_url = settings.effective_redis_url
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url or "memory://"))

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
