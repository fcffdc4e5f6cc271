"""VERP return paths: `bounces+<token>@domain`, where the token names what bounced.

A bounce is addressed to the envelope sender of the message that bounced, so a
return path that names the delivery row tells us exactly which (issue, subscriber)
bounced, whatever the report's own format. The token is signed, or anyone could
mail a forged report to our bounce mailbox and unsubscribe a stranger.

A digest message names its ledger row (the bare hexadecimal id). An email outside
the ledger, such as a confirmation, names its subscriber: the id carries the letter
`s` first (not a hex digit, so the two kinds never read as each other), and the
letter is signed with the id, so one kind cannot be passed off as the other.

Some MTAs fold the local part to lower case on the way back, so the token uses only
digits and lower-case letters: the row id in hexadecimal, a dash, then the first 80
bits of an HMAC-SHA256 (itsdangerous' key derivation, salt `chapar.verp`) in
hexadecimal, read back case-insensitively. Hex rather than base 32 because the
sender makes one per message and Python's base 32 is slow; the local part stays at
most 45 characters, within RFC 5321's 64.

Like every other token, a return path is made with the current secret and read with
it or any fallback secret, so bounces of mail sent before a rotation still count.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import Signer

from service.tokens import KeyedHmac, Tokens

PREFIX = "bounces+"
SALT = "chapar.verp"
SIGNATURE_BYTES = 10  # 80 bits: forging one needs 2**80 guesses at our mailbox
_HEX = frozenset("0123456789abcdef")
MAX_DELIVERY_ID = 2**63 - 1  # deliveries.id is a BIGINT; a larger id must not reach a query
DELIVERY = "delivery"
SUBSCRIBER = "subscriber"
_LETTERS = {DELIVERY: "", SUBSCRIBER: "s"}
_KINDS = {letter: kind for kind, letter in _LETTERS.items()}


@dataclass(frozen=True)
class VerpRef:
    """What a return path names: a ledger row (`delivery`) or a subscriber (`subscriber`)."""

    kind: str
    id: int


Secrets = Tokens | str | tuple[str, ...]


def _keys_of(secret: Secrets) -> tuple[str, ...]:
    """The secrets, oldest first and the signing one last (itsdangerous' order)."""
    if isinstance(secret, str):
        return (secret,)
    return secret.secret_keys if isinstance(secret, Tokens) else secret


class VerpSigner:
    """Makes and reads VERP tokens; build one per process, it caches the derived keys."""

    def __init__(self, secret: Secrets) -> None:
        signer = Signer(list(_keys_of(secret)), salt=SALT, digest_method=hashlib.sha256)
        self._keys = [KeyedHmac(signer.derive_key(key), "sha256")
                      for key in reversed(signer.secret_keys)]  # newest first

    @staticmethod
    def _signature(key: KeyedHmac, id_text: str) -> str:
        return key.digest(id_text.encode("ascii"))[:SIGNATURE_BYTES].hex()

    def token(self, delivery_id: int, kind: str = DELIVERY) -> str:
        if not 0 < delivery_id <= MAX_DELIVERY_ID:
            raise ValueError("ids are positive SQL integers")
        id_text = _LETTERS[kind] + format(delivery_id, "x")
        return f"{id_text}-{self._signature(self._keys[0], id_text)}"

    def address(self, delivery_id: int, domain: str, kind: str = DELIVERY) -> str:
        """The return path for one delivery row (or subscriber): `bounces+<token>@domain`."""
        return f"{PREFIX}{self.token(delivery_id, kind)}@{domain}"

    def read_ref(self, token: str) -> VerpRef | None:
        """What a token names, or None when it is forged or mangled."""
        id_text, dash, signature = token.strip().lower().partition("-")
        letter = id_text[0] if id_text and id_text[0] in _KINDS else ""
        digits = id_text[len(letter):]
        if not dash or not 0 < len(digits) <= 16 or digits.startswith("0"):
            return None
        if not digits.isascii() or not all(c in _HEX for c in digits):
            return None
        if int(digits, 16) > MAX_DELIVERY_ID:
            return None
        if not any(hmac.compare_digest(self._signature(key, id_text), signature) for key in self._keys):
            return None
        return VerpRef(_KINDS[letter], int(digits, 16))

    def read_token(self, token: str) -> int | None:
        """The delivery id a token stands for, or None when it is forged, mangled or not a row's."""
        ref = self.read_ref(token)
        return ref.id if ref is not None and ref.kind == DELIVERY else None

    def read_address(self, address: str) -> VerpRef | None:
        """What a VERP address names, or None if it is not one of ours.

        Accepts `<bounces+...@domain>`, a bare local part, and any letter case.
        """
        local = address.strip().strip("<>").rpartition("@")[0] or address.strip().strip("<>")
        if not local.lower().startswith(PREFIX):
            return None
        return self.read_ref(local[len(PREFIX):])

    def read(self, address: str) -> int | None:
        """The delivery id a VERP address stands for, or None if it does not name a row of ours."""
        ref = self.read_address(address)
        return ref.id if ref is not None and ref.kind == DELIVERY else None


@lru_cache(maxsize=8)
def _signer(keys: tuple[str, ...]) -> VerpSigner:
    return VerpSigner(keys)


def verp_address(secret: Secrets, delivery_id: int, domain: str) -> str:
    """`bounces+<token>@domain`: a bounce to this address names its ledger row."""
    return _signer(_keys_of(secret)).address(delivery_id, domain)


def read_verp(secret: Secrets, address: str) -> int | None:
    """The delivery id a VERP address stands for, or None if it is not ours."""
    return _signer(_keys_of(secret)).read(address)
