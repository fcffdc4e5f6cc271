"""One-time codes: the step a code belongs to, Persian digits, and secrets pyotp cannot use."""

from __future__ import annotations

from datetime import timedelta

import pyotp

from service.clock import utcnow
from service.staff import totp


def test_a_code_names_its_step_within_one_step_of_drift() -> None:
    secret, now = totp.new_secret(), utcnow()
    step = pyotp.TOTP(secret).timecode(now)
    assert totp.matching_step(secret, totp.current_code(secret, now), now) == step
    ahead = now + timedelta(seconds=30)
    assert totp.matching_step(secret, totp.current_code(secret, ahead), now) == step + 1
    persian = totp.current_code(secret, now).translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert totp.matching_step(secret, persian, now) == step
    assert totp.matching_step(secret, totp.current_code(secret, now + timedelta(minutes=2)), now) is None
    assert totp.matching_step(secret, "12345a", now) is None


def test_a_secret_pyotp_cannot_use_matches_no_code() -> None:
    now = utcnow()
    for secret in ("A" * 16, "not base32 at all!!", "1" * 32, ""):
        assert not totp.usable(secret)
        assert totp.matching_step(secret, "123456", now) is None
    assert totp.usable(totp.new_secret())
