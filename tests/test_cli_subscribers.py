"""`chapar subscribers import/export` through click, on PostgreSQL and SQLite."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.cli import main
from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status, Subscriber
from service.tokens import Purpose
from service.web.app import create_app

ROWS = [
    "email,name",
    "sara@example.com,Sara",
    "bad address,Nobody",
    "Reza@Example.com,Reza",
    "reza@example.com,Reza again",
    "ali@example,Ali",
]


def chapar(rt: Runtime, *args: str, secret_key: str | None = None, fallbacks: str = "") -> Result:
    env = {
        "CHAPAR_ENVIRONMENT": "test",
        "CHAPAR_DATABASE_URL": rt.settings.effective_database_url,
        "CHAPAR_SECRET_KEY": secret_key or rt.settings.secret_key,
        "CHAPAR_SECRET_KEY_FALLBACKS": fallbacks,
        "CHAPAR_DATA_DIR": str(rt.settings.data_dir),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write_csv(folder: Path, rows: list[str]) -> Path:
    path = folder / "readers.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_import_reports_rejected_lines_and_is_safe_to_run_twice(runtime: Runtime,
                                                                tmp_path: Path) -> None:
    path = write_csv(tmp_path, ROWS)
    report = tmp_path / "rejected.csv"
    first = chapar(runtime, "subscribers", "import", str(path), "--report", str(report))
    assert first.exit_code == 0, first.output
    assert "added 2, already present 1, erased earlier (skipped) 0, rejected 2" in first.stdout
    assert "line 3: 'bad address'" in first.stderr and "line 6: 'ali@example'" in first.stderr
    with report.open(encoding="utf-8") as stream:
        assert [row[:2] for row in csv.reader(stream)] == [
            ["line", "value"], ["3", "bad address"], ["6", "ali@example"],
        ]
    second = chapar(runtime, "subscribers", "import", str(path))
    assert second.exit_code == 0
    assert "added 0, already present 3" in second.stdout
    with runtime.sessions() as session:
        reza = store.find_by_email(session, "reza@example.com")
        assert reza is not None and reza.status is Status.CONFIRMED
        assert reza.consent_source == "import:readers.csv"


def test_import_with_an_explicit_source_as_pending(runtime: Runtime, tmp_path: Path) -> None:
    path = write_csv(tmp_path, ROWS[:2])
    result = chapar(runtime, "subscribers", "import", str(path), "--pending",
                    "--source", "import:print-edition-signups-1403")
    assert result.exit_code == 0, result.output
    with runtime.sessions() as session:
        sara = store.find_by_email(session, "sara@example.com")
        assert sara is not None and sara.status is Status.PENDING
        assert sara.consent_source == "import:print-edition-signups-1403"


def test_a_file_without_an_email_column_is_a_clear_error(runtime: Runtime, tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["name,phone", "Sara,0912"])
    result = chapar(runtime, "subscribers", "import", str(path))
    assert result.exit_code == 1 and "no email column" in result.stderr


def test_export_writes_every_subscriber_with_consent(runtime: Runtime, tmp_path: Path) -> None:
    chapar(runtime, "subscribers", "import", str(write_csv(tmp_path, ROWS)))
    result = chapar(runtime, "subscribers", "export")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["email"] for r in rows] == ["sara@example.com", "reza@example.com"]
    assert {r["status"] for r in rows} == {"confirmed"}
    assert all(r["consent_source"] == "import:readers.csv" and r["confirmed_at"] for r in rows)
    only_pending = chapar(runtime, "subscribers", "export", "--status", "pending")
    assert list(csv.DictReader(io.StringIO(only_pending.stdout))) == []
    out = tmp_path / "export.csv"
    assert chapar(runtime, "subscribers", "export", "-o", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("sara@example.com,confirmed,")


@pytest.mark.parametrize("keep_old_key", [False, True], ids=["old-key-dropped", "old-key-fallback"])
def test_no_import_brings_anyone_back_after_the_secret_is_rotated(
        runtime: Runtime, tmp_path: Path, keep_old_key: bool) -> None:
    """Erased, unsubscribed, bounced and complained readers stay so whatever the secret is now."""
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        ids = {email: store.subscribe(session, email, store.Consent("web:test"), now).subscriber_id
               for email in ("erased@example.com", "left@example.com", "bounced@example.com",
                             "complained@example.com")}
        store.unsubscribe(session, ids["left@example.com"], now, "unsubscribe link")
        store.mark_bounced(session, ids["bounced@example.com"], now, "550 5.1.1 no such user")
        session.execute(update(Subscriber).where(Subscriber.id == ids["complained@example.com"])
                        .values(status=Status.COMPLAINED))
    # The reader erases themselves from the preferences page, under the old secret.
    client = TestClient(create_app(runtime), raise_server_exceptions=False)
    preferences = runtime.tokens.lasting(Purpose.PREFERENCES, ids["erased@example.com"])
    erased = client.post(f"/preferences/{preferences}/erase", data={"confirm": "yes"})
    assert erased.status_code == 200

    old_key = runtime.settings.secret_key
    path = write_csv(tmp_path, ["email", *ids])
    result = chapar(runtime, "subscribers", "import", str(path),
                    secret_key="a-brand-new-secret-after-rotation-0123456789",
                    fallbacks=old_key if keep_old_key else "")
    assert result.exit_code == 0, result.output
    assert "added 0, already present 3, erased earlier (skipped) 1" in result.stdout
    with runtime.sessions() as session:
        assert store.find_by_email(session, "erased@example.com") is None
        statuses = {email: subscriber.status for email in ids
                    if (subscriber := store.find_by_email(session, email)) is not None}
    assert statuses == {"left@example.com": Status.UNSUBSCRIBED,
                        "bounced@example.com": Status.BOUNCED,
                        "complained@example.com": Status.COMPLAINED}
