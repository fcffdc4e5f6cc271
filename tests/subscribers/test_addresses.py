"""Address normalisation: one canonical form per mailbox, hostile input refused."""

from __future__ import annotations

import pytest

from service.subscribers.addresses import MESSAGES, AddressError, address_hash, normalize_address


@pytest.mark.parametrize(("raw", "canonical"), [
    ("Reader@Example.COM", "reader@example.com"),
    ("  reader@example.com\t", "reader@example.com"),
    ("reader@example.com\r\n", "reader@example.com"),  # a pasted line end, not an injection
    ("ali@مثال.ایران", "ali@xn--mgbh0fb.xn--mgba3a4f16a"),
    ("ALI@XN--MGBH0FB.XN--MGBA3A4F16A", "ali@xn--mgbh0fb.xn--mgba3a4f16a"),
    ("Hans@Bücher.de", "hans@xn--bcher-kva.de"),
    ("first.last+news@sub.example.co.uk", "first.last+news@sub.example.co.uk"),
])
def test_one_canonical_form_per_mailbox(raw: str, canonical: str) -> None:
    assert normalize_address(raw) == canonical


@pytest.mark.parametrize(("raw", "code"), [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 245 + "@example.com", "too_long"),
    ("reader@example.com\r\nBcc: all@example.com", "control"),
    ("reader\x00@example.com", "control"),
    ("reader@exa\u200bmple.com", "control"),  # zero-width space hides in a domain
    ("reader@example.com\u202e", "control"),  # right-to-left override
    ("reader\u2028@example.com", "control"),  # line separator
    ("reader@example", "invalid"),
    ("reader@@example.com", "invalid"),
    ("<reader@example.com>", "invalid"),
    ("reader@example.com, other@example.com", "invalid"),
    ("reader@[127.0.0.1]", "invalid"),
    ("علی@example.com", "smtputf8"),
])
def test_hostile_and_malformed_addresses_are_refused(raw: str, code: str) -> None:
    with pytest.raises(AddressError) as caught:
        normalize_address(raw)
    assert caught.value.code == code
    assert caught.value.message == MESSAGES[code]


def test_a_persian_local_part_is_accepted_when_the_relay_speaks_smtputf8() -> None:
    assert normalize_address("علی@example.com", allow_smtputf8=True) == "علی@example.com"


@pytest.mark.parametrize(("local", "accepted"), [
    ("a" * 64, True),
    ("a" * 65, False),
    ("A" * 65, False),
    ("ع" * 32, True),  # 64 octets in UTF-8
    ("ع" * 33, False),  # 33 characters but 66 octets: RFC 5321 counts octets
])
def test_a_local_part_may_be_at_most_64_octets_as_sent(local: str, accepted: bool) -> None:
    address = f"{local}@example.com"
    if accepted:
        assert normalize_address(address, allow_smtputf8=True) == address.lower()
    else:
        with pytest.raises(AddressError) as caught:
            normalize_address(address, allow_smtputf8=True)
        assert caught.value.code == "too_long"


def test_the_erasure_hash_is_keyed() -> None:
    first = address_hash(b"key-one", "reader@example.com")
    assert first == address_hash(b"key-one", "reader@example.com")
    assert first != address_hash(b"key-two", "reader@example.com")
    assert "reader" not in first and len(first) == 64
