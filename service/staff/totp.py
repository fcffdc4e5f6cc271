"""Optional time-based one-time codes (RFC 6238) for staff logins, with pyotp."""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "Chapar"
# People on a Persian keyboard type Persian or Arabic-Indic digits.
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "0123456789" * 2)


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// address an authenticator app takes (typed in, or as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def verify(secret: str, code: str, now: datetime) -> bool:
    """Whether the code is right now, allowing one 30-second step of clock drift."""
    code = code.translate(_DIGITS).strip().replace(" ", "")
    if not (code.isascii() and code.isdigit()):
        return False
    return bool(pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1))


def current_code(secret: str, now: datetime) -> str:
    return str(pyotp.TOTP(secret).at(now))
