"""Signed, purpose-specific tokens for the links in every email.

Each purpose has its own salt, so an unsubscribe token can never confirm an address
and a confirm token can never open the preferences page.

Tokens are signed with the current secret and read with it or any of the earlier
secrets still listed as fallbacks, so rotating the secret does not break the links
in issues already mailed (itsdangerous takes the keys oldest first, signs with the
last one and verifies with each).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

# Subscriber and delivery ids are SQL INTEGER columns; a larger id can only be a
# forgery or a bug, and PostgreSQL would answer a look-up for it with an error.
MAX_ID = 2**31 - 1
MAX_NONCE_LENGTH = 32


class KeyedHmac:
    """HMAC (RFC 2104) under one key for many short messages, at half hmac.digest's cost.

    hmac.digest goes through OpenSSL 3's one-shot HMAC, which fetches the algorithm and
    sets up a context on every call: 2.3 us a call on our 2-core machine, and the
    sender makes three a message (two link tokens, the return path). Here the key's
    inner and outer hash states are computed once and each message copies them (1.1
    us), as the standard library's own pure-Python HMAC does. The tests check it
    against hmac.digest.
    """

    def __init__(self, key: bytes, digest: str) -> None:
        block = hashlib.new(digest).block_size
        if len(key) > block:
            key = hashlib.new(digest, key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.new(digest, key.translate(_INNER_PAD))
        self._outer = hashlib.new(digest, key.translate(_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    BOUNCE = "bounce"
    CLICK = "click"


class TokenError(Exception):
    """The token is forged, truncated, meant for another purpose, or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" | "expired"


class ConfirmRequest(NamedTuple):
    """What a confirm link names: a subscriber and the subscription request it answers.

    `nonce` is None for links mailed before requests had one; they match only a
    subscriber whose request has none either.
    """

    subscriber_id: int
    nonce: str | None


class ClickLink(NamedTuple):
    """What a tracked article link names (service.digests.clicks makes and follows them).

    `url_digest` names the URL the link was signed for; `sent_step` is when the message
    was sent, in coarse steps (clicks.SEND_STEP_SECONDS); `subscriber_id` only in the
    per-reader mode, None otherwise.
    """

    issue_number: int
    article_id: int
    url_digest: str
    sent_step: int
    subscriber_id: int | None = None

    def payload(self) -> list[int | str]:
        head: list[int | str] = [self.issue_number, self.article_id, self.url_digest, self.sent_step]
        return head if self.subscriber_id is None else [*head, self.subscriber_id]


MAX_DIGEST_LENGTH = 32


class Tokens:
    def __init__(self, secret_key: str, confirm_max_age: int,
                 fallback_keys: Sequence[str] = ()) -> None:
        # Oldest first, the signing key last: the order itsdangerous expects.
        self.secret_keys: tuple[str, ...] = (*reversed(fallback_keys), secret_key)
        self._confirm_max_age = confirm_max_age

    def _timed(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(list(self.secret_keys), salt=f"chapar.{purpose.value}")

    def _plain(self, purpose: Purpose) -> URLSafeSerializer:
        return URLSafeSerializer(list(self.secret_keys), salt=f"chapar.{purpose.value}")

    def confirm(self, subscriber_id: int, nonce: str | None) -> str:
        """A link that confirms only the request `nonce` names, for a limited time.

        None, for a request from before requests had names, makes the old form.
        """
        payload = subscriber_id if nonce is None else [subscriber_id, nonce]
        return self._timed(Purpose.CONFIRM).dumps(payload)

    def read_confirm(self, token: str) -> ConfirmRequest:
        try:
            value = self._timed(Purpose.CONFIRM).loads(token, max_age=self._confirm_max_age)
        except SignatureExpired as exc:
            raise TokenError("expired") from exc
        except BadSignature as exc:
            raise TokenError("invalid") from exc
        if type(value) is int:  # mailed before confirm links named their request
            return ConfirmRequest(_as_id(value), None)
        if (type(value) is not list or len(value) != 2 or type(value[1]) is not str
                or not 0 < len(value[1]) <= MAX_NONCE_LENGTH):
            raise TokenError("invalid")
        return ConfirmRequest(_as_id(value[0]), value[1])

    def lasting(self, purpose: Purpose, subscriber_id: int) -> str:
        """A token that does not expire: unsubscribe links must work years later."""
        return self._plain(purpose).dumps(subscriber_id)

    def read_lasting(self, purpose: Purpose, token: str) -> int:
        try:
            value = self._plain(purpose).loads(token)
        except BadSignature as exc:
            raise TokenError("invalid") from exc
        return _as_id(value)

    def click(self, link: ClickLink) -> str:
        """A tracked article link's token; it does not expire (old issues keep working)."""
        return self._plain(Purpose.CLICK).dumps(link.payload())

    def read_click(self, token: str) -> ClickLink:
        try:
            value = self._plain(Purpose.CLICK).loads(token)
        except BadSignature as exc:
            raise TokenError("invalid") from exc
        if type(value) is not list or len(value) not in (4, 5):
            raise TokenError("invalid")
        digest, step = value[2], value[3]
        if (type(digest) is not str or not 0 < len(digest) <= MAX_DIGEST_LENGTH
                or type(step) is not int or step < 0):
            raise TokenError("invalid")
        subscriber = _as_id(value[4]) if len(value) == 5 else None
        return ClickLink(_as_id(value[0]), _as_id(value[1]), digest, step, subscriber)


def _as_id(value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise TokenError("invalid")
    return value
