"""Staff accounts: create, invite, set a password, change a role, disable.

The command line and the desk call these same functions; each one writes its
audit entry, and none of them commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.staff import audit, sessions
from service.staff.audit import Actor
from service.staff.models import StaffAccount
from service.staff.passwords import hash_password
from service.staff.permissions import check_role
from service.subscribers.addresses import normalize_address


class AccountError(ValueError):
    """A request about an account that cannot be carried out; the message is for people."""


def target(account: StaffAccount) -> str:
    return f"staff:{account.id}"


def find(session: Session, email: str) -> StaffAccount | None:
    return session.scalars(
        select(StaffAccount).where(func.lower(StaffAccount.email) == email.strip().lower())
    ).one_or_none()


def get(session: Session, account_id: int) -> StaffAccount:
    account = session.get(StaffAccount, account_id)
    if account is None:
        raise AccountError("no such staff account")
    return account


def all_accounts(session: Session) -> list[StaffAccount]:
    return list(session.scalars(select(StaffAccount).order_by(StaffAccount.email)))


def _new_account(session: Session, email: str, role: str, name: str, now: datetime) -> StaffAccount:
    address = normalize_address(email)
    check_role(role)
    if find(session, address) is not None:
        raise AccountError(f"a staff account for {address} already exists")
    account = StaffAccount(email=address, name=name.strip()[:200], role=role, created_at=now,
                           failed_logins=0)
    session.add(account)
    session.flush()
    return account


def create(session: Session, actor: Actor, email: str, role: str, password: str, now: datetime,
           name: str = "") -> StaffAccount:
    """A new account that can sign in at once (the command line's way)."""
    password_hash = hash_password(password)
    account = _new_account(session, email, role, name, now)
    account.password_hash = password_hash
    account.password_changed_at = now
    audit.record(session, actor, "staff.create", target(account), now, f"role={role}")
    return account


def invite(session: Session, actor: Actor, email: str, role: str, now: datetime,
           name: str = "") -> StaffAccount:
    """A new account without a password; the invitation link lets its owner set one."""
    account = _new_account(session, email, role, name, now)
    audit.record(session, actor, "staff.invite", target(account), now, f"role={role}")
    return account


def withdraw_invite(session: Session, actor: Actor, account_id: int, now: datetime,
                    reason: str) -> None:
    """Remove an invited account whose invitation never reached its owner.

    Only an account that never got a password is removed: once its owner has signed in,
    it is theirs, whatever became of the email.
    """
    account = session.get(StaffAccount, account_id)
    if account is None or account.password_hash:
        return
    audit.record(session, actor, "staff.invite_withdrawn", target(account), now, reason[:500])
    session.delete(account)


def set_password(session: Session, actor: Actor, account: StaffAccount, password: str,
                 now: datetime) -> None:
    """Set a new password; every session of the account ends, so a stolen one dies too."""
    account.password_hash = hash_password(password)
    account.password_changed_at = now
    account.failed_logins = 0
    account.locked_until = None
    sessions.end_all(session, account, now, "password changed")
    audit.record(session, actor, "staff.password", target(account), now)


def change_role(session: Session, actor: Actor, account: StaffAccount, role: str,
                now: datetime) -> None:
    check_role(role)
    if account.role == role:
        return
    if account.role == "admin" and role != "admin":
        _keep_one_admin(session, account)
    before, account.role = account.role, role
    audit.record(session, actor, "staff.role", target(account), now, f"{before} -> {role}")


def disable(session: Session, actor: Actor, account: StaffAccount, now: datetime) -> bool:
    """Disable the account and end its sessions; False if it was already disabled."""
    if account.disabled_at is not None:
        return False
    if account.role == "admin":
        _keep_one_admin(session, account)
    account.disabled_at = now
    sessions.end_all(session, account, now, "account disabled")
    audit.record(session, actor, "staff.disable", target(account), now)
    return True


def enable(session: Session, actor: Actor, account: StaffAccount, now: datetime) -> bool:
    if account.disabled_at is None:
        return False
    account.disabled_at = None
    account.failed_logins = 0
    account.locked_until = None
    audit.record(session, actor, "staff.enable", target(account), now)
    return True


def _keep_one_admin(session: Session, leaving: StaffAccount) -> None:
    """Refuse to remove the last active admin: nobody could manage staff any more."""
    others = session.scalar(
        select(func.count()).select_from(StaffAccount).where(
            StaffAccount.role == "admin", StaffAccount.disabled_at.is_(None),
            StaffAccount.id != leaving.id)
    )
    if not others:
        raise AccountError("this is the last active admin; make another admin first")


def set_totp(session: Session, actor: Actor, account: StaffAccount, secret: str, now: datetime,
             step: int | None = None) -> None:
    """Require a one-time code from now on (the caller checked one code against the secret).

    `step` is that code's time step: it is used up, so it cannot also open a sign-in.
    """
    account.totp_secret = secret
    account.totp_last_step = step
    audit.record(session, actor, "staff.totp", target(account), now)
