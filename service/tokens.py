"""Signed, purpose-specific tokens for the links in every email.

Each purpose has its own salt, so an unsubscribe token can never confirm an address
and a confirm token can never open the preferences page.
"""

from __future__ import annotations

import enum

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    BOUNCE = "bounce"


class TokenError(Exception):
    """The token is forged, truncated, meant for another purpose, or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" | "expired"


class Tokens:
    def __init__(self, secret_key: str, confirm_max_age: int) -> None:
        self._secret = secret_key
        self._confirm_max_age = confirm_max_age

    def _timed(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret, salt=f"chapar.{purpose.value}")

    def _plain(self, purpose: Purpose) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"chapar.{purpose.value}")

    def confirm(self, subscriber_id: int) -> str:
        return self._timed(Purpose.CONFIRM).dumps(subscriber_id)

    def read_confirm(self, token: str) -> int:
        try:
            value = self._timed(Purpose.CONFIRM).loads(token, max_age=self._confirm_max_age)
        except SignatureExpired as exc:
            raise TokenError("expired") from exc
        except BadSignature as exc:
            raise TokenError("invalid") from exc
        return _as_id(value)

    def lasting(self, purpose: Purpose, subscriber_id: int) -> str:
        """A token that does not expire: unsubscribe links must work years later."""
        return self._plain(purpose).dumps(subscriber_id)

    def read_lasting(self, purpose: Purpose, token: str) -> int:
        try:
            value = self._plain(purpose).loads(token)
        except BadSignature as exc:
            raise TokenError("invalid") from exc
        return _as_id(value)


def _as_id(value: object) -> int:
    if type(value) is not int or value <= 0:
        raise TokenError("invalid")
    return value
