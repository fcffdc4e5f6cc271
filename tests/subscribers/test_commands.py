"""`chapar subscribers export/unsubscribe/resend-confirmation/erase`: the desk's actions and filters."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select

from service.cli import main
from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff.models import AuditEntry
from service.subscribers import store
from service.subscribers.models import Status, Subscriber
from tests.subscribers.factories import find, make
from tests.test_cli_subscribers import chapar

ON_THE_8TH = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)  # 1405/09/08 00:30 in Tehran


def cli_audit(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.sessions() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.actor, e.action, e.detail) for e in entries]


def test_export_takes_the_readers_page_filters(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        for n, (email, status, source) in enumerate([
                ("sara@example.com", Status.CONFIRMED, "web:embed"),
                ("SARAH@yahoo.com".lower(), Status.PENDING, "web:embed"),
                ("reza@example.com", Status.CONFIRMED, "import:print.csv")]):
            at = ON_THE_8TH + timedelta(days=n)
            session.add(Subscriber(email=email, status=status, created_at=at, updated_at=at,
                                   consent_source=source, consent_at=at))
    everyone = chapar(runtime, "subscribers", "export")
    assert everyone.exit_code == 0, everyone.output
    assert [r["email"] for r in csv.DictReader(io.StringIO(everyone.stdout))] == [
        "sara@example.com", "sarah@yahoo.com", "reza@example.com"]
    assert "exported 3 subscribers" in everyone.stderr

    def emails(*args: str) -> list[str]:
        result = chapar(runtime, "subscribers", "export", *args)
        assert result.exit_code == 0, result.output
        return [r["email"] for r in csv.DictReader(io.StringIO(result.stdout))]

    assert emails("--address", "SARA") == ["sara@example.com", "sarah@yahoo.com"]
    assert emails("--address", "sara", "--status", "pending") == ["sarah@yahoo.com"]
    assert emails("--source", "import:print.csv") == ["reza@example.com"]
    assert emails("--joined-from", "۱۴۰۵/۰۹/۰۹", "--joined-to", "2026-11-30") == ["sarah@yahoo.com"]
    assert emails("--joined-to", "1405/09/08") == ["sara@example.com"]
    wrong = chapar(runtime, "subscribers", "export", "--joined-from", "1405/13/01")
    assert wrong.exit_code == 2 and "--joined-from" in wrong.stderr and "not a day" in wrong.stderr
    assert cli_audit(runtime)[:2] == [("cli", "subscribers.export", "all"),
                                      ("cli", "subscribers.export", "address~sara")]


def test_unsubscribe_and_resend_confirmation_by_address(runtime: Runtime) -> None:
    make(runtime, "member@example.com", Status.CONFIRMED)
    waiting = make(runtime, "waiting@example.com", Status.PENDING)
    done = chapar(runtime, "subscribers", "unsubscribe", "Member@Example.com")
    assert done.exit_code == 0 and done.stdout.strip() == "unsubscribed"
    member = find(runtime, "member@example.com")
    assert member is not None and member.status is Status.UNSUBSCRIBED
    again = chapar(runtime, "subscribers", "unsubscribe", "member@example.com")
    assert again.exit_code == 1 and "already left the list" in again.stderr

    soon = chapar(runtime, "subscribers", "resend-confirmation", "waiting@example.com")
    assert soon.exit_code == 1 and "within the last day" in soon.stderr and "after 20" in soon.stderr
    with unit_of_work(runtime.sessions) as session:
        row = session.get(Subscriber, waiting)
        assert row is not None
        row.confirmation_requested_at = utcnow() - timedelta(days=2)
    sent = chapar(runtime, "subscribers", "resend-confirmation", "waiting@example.com")
    assert sent.exit_code == 0 and "on its way" in sent.stdout
    member_again = chapar(runtime, "subscribers", "resend-confirmation", "member@example.com")
    assert member_again.exit_code == 1 and "waits for confirmation" in member_again.stderr
    nobody = chapar(runtime, "subscribers", "unsubscribe", "nobody@example.com")
    assert nobody.exit_code == 1 and "no such reader" in nobody.stderr
    assert [a for _, a, _ in cli_audit(runtime)] == ["subscriber.unsubscribe",
                                                     "subscriber.resend_confirmation"]


def test_erase_asks_unless_told_yes_and_the_address_stays_out(runtime: Runtime, tmp_path: Path) -> None:
    make(runtime, "leaving@example.com", Status.CONFIRMED)
    settings = runtime.settings
    env = {"CHAPAR_ENVIRONMENT": "test", "CHAPAR_DATABASE_URL": settings.effective_database_url,
           "CHAPAR_SECRET_KEY": settings.secret_key, "CHAPAR_DATA_DIR": str(settings.data_dir)}
    declined: Result = CliRunner().invoke(main, ["subscribers", "erase", "leaving@example.com"], input="n\n",
                                          env=env)
    assert declined.exit_code == 1 and "cannot be undone" in declined.stderr
    assert find(runtime, "leaving@example.com") is not None
    erased = chapar(runtime, "subscribers", "erase", "leaving@example.com", "--yes")
    assert erased.exit_code == 0 and erased.stdout.strip() == "erased"
    assert find(runtime, "leaving@example.com") is None
    path = tmp_path / "again.csv"
    path.write_text("email\nleaving@example.com\n", encoding="utf-8")
    imported = chapar(runtime, "subscribers", "import", str(path))
    assert "added 0, already present 0, erased earlier (skipped) 1" in imported.stdout
    with runtime.sessions() as session:
        assert store.is_erased(session, "leaving@example.com")
    assert [a for _, a, _ in cli_audit(runtime)] == ["subscriber.erase"]
