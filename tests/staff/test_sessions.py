"""Sessions end when idle, at their absolute lifetime, when revoked, on password change and disable."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from service.clock import utcnow
from service.staff import accounts, sessions
from service.staff.audit import CLI
from service.staff.models import AuditEntry
from service.staff.permissions import Permission, allows
from tests.staff.factories import staff_account

LIFE = sessions.Lifetime(idle=timedelta(minutes=30), absolute=timedelta(hours=8))


def test_a_session_lives_while_used_and_dies_when_idle(session: Session) -> None:
    now = utcnow()
    account = staff_account(session, now=now)
    token, row = sessions.start(session, account, now)
    assert row.token_hash != token  # the table never holds the cookie's value
    assert sessions.resume(session, token, now + timedelta(minutes=29), LIFE) is row
    assert sessions.resume(session, token, now + timedelta(minutes=58), LIFE) is row  # kept alive
    assert sessions.resume(session, token, now + timedelta(minutes=89), LIFE) is None
    assert row.ended_reason == "idle"
    assert sessions.resume(session, "not-a-token", now, LIFE) is None


def test_a_used_session_still_ends_at_its_absolute_lifetime(session: Session) -> None:
    now = utcnow()
    token, row = sessions.start(session, staff_account(session, now=now), now)
    moment = now
    while moment + timedelta(minutes=20) < now + timedelta(hours=8):
        moment += timedelta(minutes=20)
        assert sessions.resume(session, token, moment, LIFE) is row
    assert sessions.resume(session, token, now + timedelta(hours=8), LIFE) is None
    assert row.ended_reason == "absolute lifetime"


def test_revoke_ends_only_ones_own_session(session: Session) -> None:
    now = utcnow()
    mine, theirs = staff_account(session, "a@example.com", now=now), staff_account(session, "b@example.com")
    token, row = sessions.start(session, mine, now)
    their_token, their_row = sessions.start(session, theirs, now)
    assert not sessions.revoke(session, CLI, mine, their_row.id, now)
    assert sessions.resume(session, their_token, now, LIFE) is their_row
    assert sessions.revoke(session, CLI, mine, row.id, now)
    assert sessions.resume(session, token, now, LIFE) is None
    assert [s.id for s in sessions.live(session, theirs, now, LIFE)] == [their_row.id]


def test_a_password_change_and_disabling_end_every_session(session: Session) -> None:
    now = utcnow()
    account = staff_account(session, now=now)
    first, _ = sessions.start(session, account, now)
    second, _ = sessions.start(session, account, now)
    accounts.set_password(session, CLI, account, "a brand new password", now)
    assert sessions.resume(session, first, now, LIFE) is None
    assert sessions.resume(session, second, now, LIFE) is None
    third, _ = sessions.start(session, account, now)
    assert sessions.resume(session, third, now, LIFE) is not None
    accounts.disable(session, CLI, account, now)
    assert sessions.resume(session, third, now, LIFE) is None


def test_every_account_change_writes_an_audit_entry(session: Session) -> None:
    now = utcnow()
    staff_account(session, "boss@example.com", "admin", now=now)
    account = staff_account(session, now=now)
    invited = accounts.invite(session, CLI, "new@example.com", "viewer", now)
    accounts.change_role(session, CLI, account, "chief-editor", now)
    accounts.set_password(session, CLI, invited, "a brand new password", now)
    accounts.set_totp(session, CLI, account, "JBSWY3DPEHPK3PXP", now)
    accounts.disable(session, CLI, account, now)
    accounts.enable(session, CLI, account, now)
    entries = session.query(AuditEntry).order_by(AuditEntry.id).all()
    assert [(e.action, e.target) for e in entries] == [
        ("staff.create", f"staff:{account.id - 1}"), ("staff.create", f"staff:{account.id}"),
        ("staff.invite", f"staff:{invited.id}"), ("staff.role", f"staff:{account.id}"),
        ("staff.password", f"staff:{invited.id}"), ("staff.totp", f"staff:{account.id}"),
        ("staff.disable", f"staff:{account.id}"), ("staff.enable", f"staff:{account.id}"),
    ]
    assert entries[3].detail == "editor -> chief-editor"
    assert all(e.actor == "cli" and e.at == now for e in entries)


def test_the_last_admin_cannot_be_disabled_or_demoted(session: Session) -> None:
    boss = staff_account(session, "boss@example.com", "admin")
    for attempt in (lambda: accounts.disable(session, CLI, boss, utcnow()),
                    lambda: accounts.change_role(session, CLI, boss, "editor", utcnow())):
        try:
            attempt()
        except accounts.AccountError:
            pass
        else:
            raise AssertionError("the last admin was removed")
    staff_account(session, "second@example.com", "admin")
    accounts.change_role(session, CLI, boss, "editor", utcnow())
    assert boss.role == "editor"


def test_roles_hold_exactly_their_permissions() -> None:
    assert all(allows("admin", p) for p in Permission)
    assert not any(allows("viewer", p) for p in Permission)
    assert allows("editor", Permission.ISSUES_PREPARE) and not allows("editor", Permission.ISSUES_SEND)
    assert allows("chief-editor", Permission.ISSUES_APPROVE)
    assert not allows("chief-editor", Permission.STAFF_MANAGE)
    assert allows("ops", Permission.OPS_ACT) and not allows("ops", Permission.SUBSCRIBERS_VIEW)
    assert not allows("no-such-role", Permission.STATS_VIEW)
