"""Rate limits shared by every web process (Redis), or per process on the embedded setup."""

from __future__ import annotations

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from service.settings import Settings


class SubscribeLimits:
    """Per client and per target address, so the form cannot flood a stranger's inbox."""

    def __init__(self, settings: Settings) -> None:
        redis_url = settings.effective_redis_url
        # limits names the redis-py backed storage "redis://"; "memory://" is per process,
        # which is right for the embedded setup where one web process runs.
        storage = storage_from_string(redis_url if redis_url else "memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_client = parse_many(settings.subscribe_rate_per_client)
        self._per_address = parse_many(settings.subscribe_rate_per_address)

    def allow_client(self, client: str) -> bool:
        return all(
            [self._limiter.hit(limit, "chapar-subscribe-client", client)
             for limit in self._per_client]
        )

    def allow_address(self, address: str) -> bool:
        return all(
            [self._limiter.hit(limit, "chapar-subscribe-address", address)
             for limit in self._per_address]
        )
