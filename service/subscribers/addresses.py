"""Address validation and normalisation: one canonical form per mailbox."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254  # RFC 5321 path limit less the angle brackets
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1

MESSAGES = {
    "empty": "نشانی ایمیل را وارد کنید.",
    "too_long": "نشانی ایمیل بیش از اندازه بلند است.",
    "control": "نشانی ایمیل نویسه‌های نامجاز دارد.",
    "invalid": "این نشانی ایمیل درست نیست.",
    "smtputf8": "نشانی‌هایی که بخش پیش از @ آن‌ها غیرلاتین است پشتیبانی نمی‌شوند.",
}
# The same reasons in English, for reports read outside the desk.
MESSAGES_EN = {
    "empty": "no address",
    "too_long": "the address is too long",
    "control": "the address holds control or invisible characters",
    "invalid": "not a valid email address",
    "smtputf8": "a non-Latin part before the @ is not supported",
}


class AddressError(ValueError):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.message = MESSAGES[code]


def normalize_address(raw: str, *, allow_smtputf8: bool = False) -> str:
    """Validate an address and return its canonical form, or raise AddressError.

    The canonical form is lower-case with the domain in IDNA (ASCII) form, so
    «Ali@Example.COM» and «ali@example.com» are one subscriber. No DNS lookups: a
    subscribe form must not become a way to make us query arbitrary domains.
    """
    if raw is None or not raw.strip():
        raise AddressError("empty")
    candidate = raw.strip()
    if len(candidate) > MAX_LENGTH:
        raise AddressError("too_long")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in candidate):
        # CR/LF (header injection), NUL, bidi overrides and zero-width characters.
        raise AddressError("control")
    try:
        result = validate_email(
            candidate, check_deliverability=False, allow_smtputf8=allow_smtputf8
        )
    except EmailNotValidError as exc:
        text = str(exc)
        code = "smtputf8" if "SMTPUTF8" in text or "internationalized" in text.lower() else "invalid"
        raise AddressError(code, text) from exc
    address = (result.ascii_email if result.ascii_email else result.normalized).lower()
    # email-validator counts the local part in characters, and only in strict mode; the
    # limit is in octets of what goes on the wire (UTF-8 under SMTPUTF8).
    if len(address.rpartition("@")[0].encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise AddressError("too_long")
    return address


def address_hash(key: bytes, address: str) -> str:
    """A keyed hash that recognises an erased address without storing it.

    `key` is the installation's suppression key (instance_keys.SUPPRESSION).
    """
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()
