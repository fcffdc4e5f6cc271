"""A one-time code opens one sign-in (RFC 6238 5.2), on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff import accounts, login
from service.staff.audit import CLI
from service.staff.models import StaffAccount
from tests.staff.factories import PASSWORD, staff_account

LOCKOUT = login.Lockout(failures=5, duration=timedelta(minutes=15))
SECRET = pyotp.random_base32()


def code_at(moment: datetime) -> str:
    return pyotp.TOTP(SECRET).at(moment)


def signs_in(session: Session, code: str, now: datetime) -> bool:
    return login.authenticate(session, "editor@example.com", PASSWORD, code, "198.51.100.7", now,
                              LOCKOUT) is not None


def test_a_code_opens_one_sign_in_and_an_older_code_none(session: Session) -> None:
    now = utcnow()
    account = staff_account(session, now=now)
    accounts.set_totp(session, CLI, account, SECRET, now)
    code = code_at(now)
    assert signs_in(session, code, now)
    # Seen over a shoulder or in a proxy's log: the same code, still inside its window.
    assert not signs_in(session, code, now + timedelta(seconds=10))
    assert account.failed_logins == 1  # a replay counts as a wrong code
    assert not signs_in(session, code_at(now - timedelta(seconds=30)), now + timedelta(seconds=10))
    later = now + timedelta(seconds=30)
    assert signs_in(session, code_at(later), later)  # the next step's code is new
    assert account.failed_logins == 0


def test_the_code_that_set_up_totp_cannot_also_sign_in(session: Session) -> None:
    now = utcnow()
    account = staff_account(session, now=now)
    step = pyotp.TOTP(SECRET).timecode(now)
    accounts.set_totp(session, CLI, account, SECRET, now, step)
    assert not signs_in(session, code_at(now), now)
    later = now + timedelta(seconds=30)
    assert signs_in(session, code_at(later), later)


def test_of_two_sign_ins_racing_with_one_code_only_the_first_opens(runtime: Runtime) -> None:
    now = utcnow()
    with unit_of_work(runtime.sessions) as db:
        accounts.set_totp(db, CLI, staff_account(db, now=now), SECRET, now)
    with runtime.sessions() as first:
        # The second sign-in read the account before the first one committed its code.
        stale = first.scalars(select(StaffAccount)).one()
        first.expunge(stale)
    with unit_of_work(runtime.sessions) as fast:
        assert signs_in(fast, code_at(now), now)
    with unit_of_work(runtime.sessions) as slow:
        stale = slow.merge(stale, load=False)
        assert stale.totp_last_step is None  # it believes the code unused...
        assert not login._use_step(slow, stale, pyotp.TOTP(SECRET).timecode(now))  # ...the database knows
    with runtime.sessions() as db:
        assert db.scalars(select(StaffAccount)).one().totp_last_step == pyotp.TOTP(SECRET).timecode(now)
