"""Signing in: throttled per address and per client, locked after repeated failures.

Every refusal gives the same answer, whether the address is unknown, the password
or code is wrong, the account is disabled or it is locked, and an unknown address
still costs one argon2 verification, so neither the words nor the time tell which.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from service.rate_limits import RateLimiter
from service.settings import Settings
from service.staff import accounts, audit, sessions, totp
from service.staff.audit import Actor
from service.staff.models import StaffAccount, StaffSession
from service.staff.passwords import HASHER, needs_rehash, verify_password


class LoginThrottle:
    """Login attempts per submitted address and per client (Redis, or per process)."""

    def __init__(self, settings: Settings) -> None:
        # While Redis is away the lock-out in the database still stops guessing.
        self._limiter = RateLimiter(settings)
        self._per_account = RateLimiter.rules(settings.staff_login_rate_per_account)
        self._per_client = RateLimiter.rules(settings.staff_login_rate_per_client)

    def allow(self, email: str, client: str) -> bool:
        """Count one attempt; False if the address or the client has tried too often."""
        by_client = self._limiter.hit(self._per_client, "chapar-staff-login-client", client)
        by_account = self._limiter.hit(self._per_account, "chapar-staff-login-account",
                                       email.strip().lower())
        return by_client and by_account


@dataclass(frozen=True)
class Lockout:
    failures: int
    duration: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Lockout:
        return cls(settings.staff_lockout_failures, timedelta(minutes=settings.staff_lockout_minutes))


def authenticate(session: Session, email: str, password: str, code: str, client: str, now: datetime,
                 lockout: Lockout) -> StaffAccount | None:
    """The account these credentials open, or None (one answer for every reason)."""
    account = accounts.find(session, email)
    if account is None:
        verify_password(None, password)  # the same work as for a wrong password
        return None
    locked = account.locked_until is not None and account.locked_until > now
    password_ok = verify_password(account.password_hash, password)
    step = totp.matching_step(account.totp_secret, code, now) if account.totp_secret else None
    code_ok = account.totp_secret is None or step is not None
    if locked or not account.active:
        return None
    if not (password_ok and code_ok) or (step is not None and not _use_step(session, account, step)):
        _failed(session, account, client, now, lockout)
        return None
    account.failed_logins = 0
    account.locked_until = None
    if account.password_hash and needs_rehash(account.password_hash):
        account.password_hash = HASHER.hash(password)
    return account


def _use_step(session: Session, account: StaffAccount, step: int) -> bool:
    """Record the code's step as used; False if it is not after the last step accepted.

    A code is accepted once (RFC 6238 5.2). One conditional UPDATE decides, so of two
    sign-ins racing with one observed code the second waits for the first's row lock,
    finds the step taken and is refused; a replayed or older code is refused the same way.
    """
    used = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id,
               or_(StaffAccount.totp_last_step.is_(None), StaffAccount.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if not used.rowcount:  # type: ignore[attr-defined]
        return False
    set_committed_value(account, "totp_last_step", step)
    return True


def _failed(session: Session, account: StaffAccount, client: str, now: datetime,
            lockout: Lockout) -> None:
    account.failed_logins += 1
    if account.failed_logins >= lockout.failures:
        account.failed_logins = 0
        account.locked_until = now + lockout.duration
        audit.record(session, Actor(None, "login", client), "staff.lock", accounts.target(account), now,
                     f"{lockout.failures} failed logins")


def sign_in(session: Session, email: str, password: str, code: str, client: str, user_agent: str,
            now: datetime, lockout: Lockout) -> str | None:
    """Authenticate and start a session; the session's cookie token, or None."""
    account = authenticate(session, email, password, code, client, now, lockout)
    if account is None:
        return None
    token, row = sessions.start(session, account, now, client, user_agent)
    audit.record(session, Actor.of(account, client), "session.login", f"session:{row.id}", now)
    return token


def sign_out(session: Session, token: str, client: str, now: datetime) -> None:
    """End the session this cookie token belongs to, if it is still live."""
    row = session.scalars(
        select(StaffSession).where(StaffSession.token_hash == sessions.token_hash(token))
    ).one_or_none()
    if row is None or row.ended_at is not None:
        return
    sessions.end(row, now, "signed out")
    audit.record(session, Actor.of(row.account, client), "session.logout", f"session:{row.id}", now)
