"""argon2id hashes: right password in, wrong out, short ones refused."""

from __future__ import annotations

import pytest

from service.staff.passwords import WeakPassword, hash_password, needs_rehash, verify_password


def test_a_hash_is_argon2id_salted_and_verifies_only_its_password() -> None:
    first = hash_password("a long enough password")
    second = hash_password("a long enough password")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt each time
    assert verify_password(first, "a long enough password")
    assert not verify_password(first, "a long enough passwore")
    assert not needs_rehash(first)


def test_no_hash_and_a_broken_hash_match_nothing() -> None:
    assert not verify_password(None, "anything at all")
    assert not verify_password("not-a-hash", "anything at all")


def test_short_passwords_are_refused() -> None:
    with pytest.raises(WeakPassword):
        hash_password("short")
