"""VERP tokens: round trip, case folding, length, and every kind of forgery refused."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest
from itsdangerous import Signer

from service.bounces.verp import DELIVERY, SUBSCRIBER, VerpRef, VerpSigner, read_verp, verp_address
from service.tokens import Tokens

SECRET = "test-secret-key-that-is-long-enough-0123456789"


def test_round_trip_for_small_and_huge_ids() -> None:
    signer = VerpSigner(SECRET)
    for delivery_id in (1, 35, 36, 10**6, 2**63 - 1):
        address = signer.address(delivery_id, "chapar.test")
        assert address.startswith("bounces+") and address.endswith("@chapar.test")
        assert signer.read(address) == delivery_id


def test_the_local_part_fits_rfc5321_and_survives_case_folding() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    signer = VerpSigner(SECRET)
    for _ in range(500):
        delivery_id = rng.randrange(1, 2**63)
        address = signer.address(delivery_id, "Chapar.Test")
        local = address.rpartition("@")[0]
        assert len(local) <= 64
        assert local == local.lower()  # nothing for an MTA to fold
        assert signer.read(address.upper()) == delivery_id
        assert signer.read(f"<{address}>") == delivery_id


def test_functions_accept_tokens_or_the_secret() -> None:
    tokens = Tokens(SECRET, 3600)
    address = verp_address(tokens, 42, "chapar.test")
    assert address == verp_address(SECRET, 42, "chapar.test")
    assert read_verp(tokens, address) == 42
    assert read_verp(SECRET, address) == 42


@pytest.mark.parametrize("mangle", [
    lambda a: a.replace("bounces+", "bounces-"),            # not our prefix
    lambda a: a.replace("+64-", "+65-"),                    # another id, same signature
    lambda a: a[:-len("@chapar.test") - 1] + "@chapar.test",  # truncated signature
    lambda a: a.replace("-", ""),                           # no separator
    lambda a: a.replace("+64-", "+064-"),                   # a padded id
    lambda a: "someone@chapar.test",
    lambda a: "",
])
def test_forged_or_mangled_addresses_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    signer = VerpSigner(SECRET)
    address = signer.address(100, "chapar.test")  # 100 is "64" in hexadecimal
    assert signer.read(address) == 100
    assert signer.read(mangle(address)) is None


def test_after_a_rotation_old_return_paths_still_read_and_new_ones_use_the_new_secret() -> None:
    old = verp_address(SECRET, 7, "chapar.test")  # on mail sent before the rotation
    rotated = Tokens("the-secret-after-rotation-long-enough-987654", 3600, fallback_keys=[SECRET])
    assert read_verp(rotated, old) == 7 and VerpSigner(rotated).read(old) == 7
    new = VerpSigner(rotated).address(8, "chapar.test")
    assert new == verp_address(rotated.secret_keys[-1], 8, "chapar.test")
    assert read_verp(SECRET, new) is None
    assert read_verp(rotated.secret_keys[-1], old) is None  # once the old secret is dropped


def test_a_signed_id_beyond_the_bigint_range_is_refused() -> None:
    with pytest.raises(ValueError):
        VerpSigner(SECRET).token(2**63)
    signer = Signer(SECRET, salt="chapar.verp", digest_method=hashlib.sha256)
    id_text = format(2**63, "x")
    signature = hmac.digest(signer.derive_key(), id_text.encode(), "sha256")[:10].hex()
    assert VerpSigner(SECRET).read_token(f"{id_text}-{signature}") is None


def test_another_secret_does_not_read_our_tokens() -> None:
    address = VerpSigner(SECRET).address(7, "chapar.test")
    assert VerpSigner(SECRET + "x").read(address) is None


def test_the_signature_differs_from_other_link_tokens() -> None:
    # Its own salt: a VERP token is no unsubscribe or preferences token.
    tokens = Tokens(SECRET, 3600)
    from service.tokens import Purpose

    token = VerpSigner(SECRET).token(7)
    assert token not in tokens.lasting(Purpose.UNSUBSCRIBE, 7)
    assert token not in tokens.lasting(Purpose.BOUNCE, 7)


def test_zero_and_negative_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        VerpSigner(SECRET).address(0, "chapar.test")


def test_a_subscriber_token_names_a_subscriber_and_never_a_row() -> None:
    signer = VerpSigner(SECRET)
    for subscriber_id in (1, 42, 2**63 - 1):
        address = signer.address(subscriber_id, "chapar.test", SUBSCRIBER)
        local = address.partition("@")[0]
        assert len(local) <= 64 and local == local.lower()
        assert signer.read_address(address.upper()) == VerpRef(SUBSCRIBER, subscriber_id)
        assert signer.read(address) is None  # not a delivery row
    # The kind is signed: a row's token with the letter added, or a subscriber's without it,
    # is a forgery.
    row = signer.address(42, "chapar.test")
    assert signer.read_address(row.replace("bounces+", "bounces+s")) is None
    subscriber = signer.address(42, "chapar.test", SUBSCRIBER)
    assert signer.read_address(subscriber.replace("bounces+s", "bounces+")) is None
    # A digest's return path made before subscriber tokens existed still reads as its row.
    assert signer.read_address(row) == VerpRef(DELIVERY, 42) and signer.read(row) == 42
