"""Revision 0005 on a database that already has readers: erasures made under the old secret
stay suppressed under any later one, the consent history starts with what each row held,
and confirm links already mailed still work. Both backends.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from service.db import UtcDateTime
from service.instance_keys import SUPPRESSION, instance_key
from service.migrations import alembic_config, upgrade
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.importer import ImportReport, import_batch
from service.subscribers.models import ConsentRecord, Status, Subscriber
from tests.conftest import make_settings

OLD_PLACEHOLDER = "dev-insecure-secret-change-me"  # the public secret of earlier versions
OLD_SECRET = "the-secret-the-erasures-were-hashed-with-0123456"
NEW_SECRET = "a-later-secret-after-a-rotation-0123456789abcdef"
THEN = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)

subscribers = sa.table(
    "subscribers", sa.column("email"), sa.column("status"), sa.column("created_at", UtcDateTime()),
    sa.column("updated_at", UtcDateTime()), sa.column("confirmed_at", UtcDateTime()),
    sa.column("soft_bounces"), sa.column("consent_source"), sa.column("consent_at", UtcDateTime()),
    sa.column("consent_ip"),
)
suppressions = sa.table("suppressions", sa.column("email_hash"), sa.column("reason"),
                        sa.column("at", UtcDateTime()))


def at_0004_with_readers(url: str) -> None:
    """The database as revision 0004 left it, with readers and one erasure under OLD_SECRET."""
    command.downgrade(alembic_config(url), "0004")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.insert(subscribers), [
            {"email": "waiting@example.com", "status": "pending", "created_at": THEN,
             "updated_at": THEN, "confirmed_at": None, "soft_bounces": 0,
             "consent_source": "web:subscribe-page", "consent_at": THEN, "consent_ip": "203.0.113.5"},
            {"email": "left@example.com", "status": "unsubscribed", "created_at": THEN,
             "updated_at": THEN, "confirmed_at": THEN, "soft_bounces": 0,
             "consent_source": "import:old.csv", "consent_at": THEN, "consent_ip": None},
        ])
        digest = hmac.new(OLD_SECRET.encode(), b"erased@example.com", hashlib.sha256).hexdigest()
        connection.execute(sa.insert(suppressions), [{"email_hash": digest, "reason": "erased",
                                                      "at": THEN}])
    engine.dispose()


def rotated_runtime(url: str, tmp_path: Path) -> Runtime:
    return Runtime.from_settings(make_settings(tmp_path, database_url=url, secret_key=NEW_SECRET,
                                               secret_key_fallbacks=OLD_SECRET))


def test_erasures_made_under_the_old_secret_survive_the_upgrade_and_a_rotation(
        fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at_0004_with_readers(fresh_url)
    monkeypatch.setenv("CHAPAR_SECRET_KEY", OLD_SECRET)  # the deployment's, as `chapar db upgrade` runs
    upgrade(fresh_url)
    monkeypatch.delenv("CHAPAR_SECRET_KEY")

    rt = rotated_runtime(fresh_url, tmp_path)
    try:
        with rt.sessions.begin() as session:
            assert store.is_erased(session, "erased@example.com")
            report = ImportReport()
            import_batch(session, [(1, "erased@example.com"), (2, "left@example.com")],
                         source="import:again.csv", status=Status.CONFIRMED, now=NOW, report=report)
            assert (report.added, report.suppressed, report.already_present) == (0, 1, 1)

            # The history begins with the consent each row held; old rows name no request.
            history = session.execute(
                select(Subscriber.email, ConsentRecord.kind, ConsentRecord.source, ConsentRecord.at,
                       ConsentRecord.ip, Subscriber.confirm_nonce)
                .join(ConsentRecord).order_by(ConsentRecord.id)
            ).all()
            assert [tuple(row) for row in history] == [
                ("waiting@example.com", "recorded", "web:subscribe-page", THEN, "203.0.113.5", None),
                ("left@example.com", "recorded", "import:old.csv", THEN, None, None),
            ]
            # A confirm link mailed before 0005 (an id, no request) confirms its reader.
            waiting = store.find_by_email(session, "waiting@example.com")
            assert waiting is not None
            request = rt.tokens.read_confirm(rt.tokens.confirm(waiting.id, None))
            confirmed = store.confirm(session, *request, now=NOW, consent=store.Consent("link"))
            assert confirmed is not None and confirmed.status is Status.CONFIRMED
            assert confirmed.consent_source == "web:subscribe-page"
    finally:
        rt.close()


def test_without_erasures_the_key_is_random_and_not_the_secret(fresh_url: str,
                                                               tmp_path: Path) -> None:
    rt = rotated_runtime(fresh_url, tmp_path)
    try:
        with rt.sessions() as session:
            key = instance_key(session, SUPPRESSION)
    finally:
        rt.close()
    assert len(key) == 32 and key not in (OLD_PLACEHOLDER.encode(), NEW_SECRET.encode())


def test_0005_downgrades_and_upgrades_again(fresh_url: str) -> None:
    at_0004_with_readers(fresh_url)
    upgrade(fresh_url)
    command.downgrade(alembic_config(fresh_url), "0004")
    engine = sa.create_engine(fresh_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert "instance_keys" not in tables and "consent_records" not in tables
        assert "confirm_nonce" not in {c["name"] for c in sa.inspect(engine).get_columns("subscribers")}
    finally:
        engine.dispose()
    upgrade(fresh_url)
