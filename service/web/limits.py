"""The subscribe form's limits per client and per target address, and the click counter's per
client (service/rate_limits.py)."""

from __future__ import annotations

from service.rate_limits import RateLimiter
from service.settings import Settings


class SubscribeLimits:
    """Per client and per target address, so the form cannot flood a stranger's inbox.

    If Redis cannot be reached the limits let requests through (and say so in the
    log): readers can still subscribe, and the database alone still allows at most
    one confirmation email per address per day.
    """

    def __init__(self, settings: Settings) -> None:
        self._limiter = RateLimiter(settings)
        self._per_client = RateLimiter.rules(settings.subscribe_rate_per_client)
        self._per_address = RateLimiter.rules(settings.subscribe_rate_per_address)

    def allow_client(self, client: str) -> bool:
        return self._limiter.hit(self._per_client, "chapar-subscribe-client", client)

    def allow_address(self, address: str) -> bool:
        return self._limiter.hit(self._per_address, "chapar-subscribe-address", address)


class ClickLimits:
    """How many clicks one client may have counted; more are redirected, not counted.

    Keyed by the click counter's hash of the client, never by its address.
    """

    def __init__(self, settings: Settings) -> None:
        self._limiter = RateLimiter(settings)
        self._per_client = RateLimiter.rules(settings.click_rate_per_client)

    def allow_client(self, client_key: str) -> bool:
        return self._limiter.hit(self._per_client, "chapar-click-client", client_key)
