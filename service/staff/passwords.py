"""argon2id password hashes (argon2-cffi with its RFC 9106 low-memory defaults)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()
MIN_LENGTH = 10


@cache
def _dummy_hash() -> str:
    """Verified against when the address is unknown, so that answer takes as long as a
    wrong password. Made on first use: a hash takes ~0.1 s, which every command would pay."""
    return HASHER.hash("chapar: no such staff account")


def prepare() -> None:
    """Make the dummy hash now (the web app, at start), not in a login that would then be slower."""
    _dummy_hash()


class WeakPassword(ValueError):
    """The password is too short to accept."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; an account without a password matches nothing."""
    try:
        return HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)
