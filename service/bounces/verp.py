"""VERP return paths: `bounces+<token>@domain`, where the token names one ledger row.

A bounce is addressed to the envelope sender of the message that bounced, so a
return path that names the delivery row tells us exactly which (issue, subscriber)
bounced, whatever the report's own format. The token is signed, or anyone could
mail a forged report to our bounce mailbox and unsubscribe a stranger.

Some MTAs fold the local part to lower case on the way back, so the token uses only
digits and lower-case letters: the row id in base 36, a dash, then the first 80 bits
of an HMAC-SHA256 (itsdangerous' key derivation, salt `chapar.verp`) in base 32.
The local part stays under 40 characters, well within RFC 5321's 64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from itsdangerous import Signer

from service.tokens import Tokens

PREFIX = "bounces+"
SALT = "chapar.verp"
SIGNATURE_BYTES = 10  # 80 bits: forging one needs 2**80 guesses at our mailbox
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _secret_of(secret: Tokens | str) -> str:
    return secret if isinstance(secret, str) else secret._secret  # Tokens keeps it private


def _base36(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if number == 0:
            return out


class VerpSigner:
    """Makes and reads VERP tokens; build one per process, it caches the derived key."""

    def __init__(self, secret: Tokens | str) -> None:
        signer = Signer(_secret_of(secret), salt=SALT, digest_method=hashlib.sha256)
        self._key = signer.derive_key()

    def _signature(self, id_text: str) -> str:
        digest = hmac.new(self._key, id_text.encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest[:SIGNATURE_BYTES]).decode("ascii").lower()

    def token(self, delivery_id: int) -> str:
        if delivery_id <= 0:
            raise ValueError("delivery ids are positive")
        id_text = _base36(delivery_id)
        return f"{id_text}-{self._signature(id_text)}"

    def address(self, delivery_id: int, domain: str) -> str:
        """The return path for one delivery row: `bounces+<token>@domain`."""
        return f"{PREFIX}{self.token(delivery_id)}@{domain}"

    def read_token(self, token: str) -> int | None:
        """The delivery id a token stands for, or None when it is forged or mangled."""
        id_text, dash, signature = token.strip().lower().partition("-")
        if not dash or not id_text or len(id_text) > 13 or not id_text.isalnum():
            return None
        if not id_text.isascii() or id_text.startswith("0"):
            return None
        if not hmac.compare_digest(self._signature(id_text), signature):
            return None
        return int(id_text, 36)

    def read(self, address: str) -> int | None:
        """The delivery id a VERP address stands for, or None if it is not one of ours.

        Accepts `<bounces+...@domain>`, a bare local part, and any letter case.
        """
        local = address.strip().strip("<>").rpartition("@")[0] or address.strip().strip("<>")
        if not local.lower().startswith(PREFIX):
            return None
        return self.read_token(local[len(PREFIX):])


def verp_address(secret: Tokens | str, delivery_id: int, domain: str) -> str:
    """`bounces+<token>@domain`: a bounce to this address names its ledger row."""
    return VerpSigner(secret).address(delivery_id, domain)


def read_verp(secret: Tokens | str, address: str) -> int | None:
    """The delivery id a VERP address stands for, or None if it is not ours."""
    return VerpSigner(secret).read(address)
