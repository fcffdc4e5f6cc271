"""Revision 0004 adds the confirmation claim column and takes it away again, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config, upgrade
from tests.support.databases import postgres_database, sqlite_database


def columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("subscribers")}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        with sqlite_database(str(tmp_path)) as url:
            yield url
    else:
        with postgres_database() as url:
            yield url


def test_0004_adds_the_claim_and_downgrades_cleanly(fresh_url: str) -> None:
    assert "confirmation_mailing_at" in columns(fresh_url)  # migrated to head
    command.downgrade(alembic_config(fresh_url), "0003")
    assert "confirmation_mailing_at" not in columns(fresh_url)
    assert "confirmation_mailed_at" in columns(fresh_url)
    upgrade(fresh_url)
    assert "confirmation_mailing_at" in columns(fresh_url)
