"""Optional time-based one-time codes (RFC 6238) for staff logins, with pyotp."""

from __future__ import annotations

import hmac
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


def _otp(secret: str) -> pyotp.TOTP | None:
    """The TOTP of this secret, or None when pyotp cannot use it (not base32, under 112 bits).

    The desk's set-up form sends the secret back in a hidden field, so it may come
    back altered; pyotp raises on one it cannot use.
    """
    try:
        otp = pyotp.TOTP(secret)
        otp.byte_secret()
    except ValueError:  # binascii.Error included
        return None
    return otp


def usable(secret: str) -> bool:
    """Whether pyotp takes this as a secret."""
    return _otp(secret) is not None


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The 30-second step the code belongs to, allowing one step of clock drift; None: wrong.

    pyotp's `verify` says only yes or no; the step is what lets a caller refuse a
    code that was already used (RFC 6238 5.2: a verifier must not accept an OTP twice).
    """
    code = code.translate(_DIGITS).strip().replace(" ", "")
    otp = _otp(secret) if code.isascii() and code.isdigit() else None
    if otp is None:
        return None
    now_step = otp.timecode(now)
    found = None
    for step in (now_step - 1, now_step, now_step + 1):  # no early return: the same work each time
        if hmac.compare_digest(otp.generate_otp(step), code):
            found = step
    return found


def current_code(secret: str, now: datetime) -> str:
    return str(pyotp.TOTP(secret).at(now))
