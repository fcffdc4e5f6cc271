"""`chapar staff create/list/disable` through click, on PostgreSQL and SQLite."""

from __future__ import annotations

from click.testing import CliRunner, Result

from service.cli import main
from service.runtime import Runtime
from service.staff import accounts
from service.staff.models import AuditEntry
from service.staff.passwords import verify_password


def chapar(rt: Runtime, *args: str, stdin: str | None = None) -> Result:
    env = {
        "CHAPAR_ENVIRONMENT": "test",
        "CHAPAR_DATABASE_URL": rt.settings.effective_database_url,
        "CHAPAR_SECRET_KEY": rt.settings.secret_key,
        "CHAPAR_DATA_DIR": str(rt.settings.data_dir),
    }
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def test_create_from_stdin_then_list_then_disable(runtime: Runtime) -> None:
    made = chapar(runtime, "staff", "create", "Boss@Example.com", "--role", "admin",
                  "--password-stdin", stdin="a long enough password\n")
    assert made.exit_code == 0, made.output
    assert "created admin boss@example.com" in made.output and "/desk/login" in made.output
    chapar(runtime, "staff", "create", "ed@example.com", "--role", "editor", "--password-stdin",
           stdin="another long password\n")
    listed = chapar(runtime, "staff", "list")
    assert listed.exit_code == 0
    assert "boss@example.com\tadmin\tactive" in listed.output
    assert "ed@example.com\teditor\tactive" in listed.output

    off = chapar(runtime, "staff", "disable", "ed@example.com")
    assert off.exit_code == 0 and "disabled ed@example.com" in off.output
    assert "ed@example.com\teditor\tdisabled" in chapar(runtime, "staff", "list").output
    with runtime.sessions() as session:
        boss = accounts.find(session, "boss@example.com")
        assert boss is not None and verify_password(boss.password_hash, "a long enough password")
        actions = [(e.actor, e.action) for e in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions == [("cli", "staff.create"), ("cli", "staff.create"), ("cli", "staff.disable")]


def test_the_prompt_asks_twice_and_refuses_a_mismatch(runtime: Runtime) -> None:
    mismatch = chapar(runtime, "staff", "create", "a@example.com", "--role", "viewer",
                      stdin="first long password\nsecond long password\n")
    assert mismatch.exit_code != 0
    ok = chapar(runtime, "staff", "create", "a@example.com", "--role", "viewer",
                stdin="first long password\nfirst long password\n")
    assert ok.exit_code == 0, ok.output


def test_bad_input_is_refused_with_a_reason(runtime: Runtime) -> None:
    pw = "a long enough password\n"
    assert chapar(runtime, "staff", "create", "x@example.com", "--role", "king",
                  "--password-stdin", stdin=pw).exit_code == 2
    short = chapar(runtime, "staff", "create", "x@example.com", "--role", "editor",
                   "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "at least" in short.output
    chapar(runtime, "staff", "create", "x@example.com", "--role", "admin", "--password-stdin", stdin=pw)
    again = chapar(runtime, "staff", "create", "X@example.com", "--role", "editor",
                   "--password-stdin", stdin=pw)
    assert again.exit_code == 1 and "already exists" in again.output
    last = chapar(runtime, "staff", "disable", "x@example.com")
    assert last.exit_code == 1 and "last active admin" in last.output
    assert chapar(runtime, "staff", "disable", "nobody@example.com").exit_code == 1
