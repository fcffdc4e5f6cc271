"""Revision 0004 adds the confirmation claim column and takes it away again, on both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config, upgrade


def columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("subscribers")}
    finally:
        engine.dispose()


def test_0004_adds_the_claim_and_downgrades_cleanly(fresh_url: str) -> None:
    assert "confirmation_mailing_at" in columns(fresh_url)  # migrated to head
    command.downgrade(alembic_config(fresh_url), "0003")
    assert "confirmation_mailing_at" not in columns(fresh_url)
    assert "confirmation_mailed_at" in columns(fresh_url)
    upgrade(fresh_url)
    assert "confirmation_mailing_at" in columns(fresh_url)
