"""Rate limits shared by every web process (Redis), or per process on the embedded setup."""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from service.settings import Settings

log = logging.getLogger(__name__)


class SubscribeLimits:
    """Per client and per target address, so the form cannot flood a stranger's inbox.

    If Redis cannot be reached the limits let requests through (and say so in the
    log): readers can still subscribe, and the database alone still allows at most
    one confirmation email per address per day.
    """

    def __init__(self, settings: Settings) -> None:
        redis_url = settings.effective_redis_url
        # limits names the redis-py backed storage "redis://"; "memory://" is per process,
        # which is right for the embedded setup where one web process runs.
        storage = storage_from_string(redis_url if redis_url else "memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_client = parse_many(settings.subscribe_rate_per_client)
        self._per_address = parse_many(settings.subscribe_rate_per_address)

    def _allow(self, limits: list[RateLimitItem], namespace: str, key: str) -> bool:
        try:
            # Hit every window (no short-circuit), so each one counts this request.
            return all([self._limiter.hit(limit, namespace, key) for limit in limits])
        except RedisError:
            log.warning("rate limit store unreachable; letting a %s request through", namespace)
            return True

    def allow_client(self, client: str) -> bool:
        return self._allow(self._per_client, "chapar-subscribe-client", client)

    def allow_address(self, address: str) -> bool:
        return self._allow(self._per_address, "chapar-subscribe-address", address)
