"""Revision 0016 adds the last accepted one-time code's step and takes it away again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config, upgrade


def columns(url: str) -> dict[str, bool]:
    engine = create_engine(url)
    try:
        return {c["name"]: c["nullable"] for c in inspect(engine).get_columns("staff_accounts")}
    finally:
        engine.dispose()


def test_0016_adds_the_step_and_downgrades_cleanly(fresh_url: str) -> None:
    assert columns(fresh_url).get("totp_last_step") is True  # migrated to head, nullable
    command.downgrade(alembic_config(fresh_url), "0015")
    assert "totp_last_step" not in columns(fresh_url)
    assert "totp_secret" in columns(fresh_url)
    upgrade(fresh_url)
    assert "totp_last_step" in columns(fresh_url)
