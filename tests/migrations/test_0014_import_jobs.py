"""Revision 0014 makes the import tables and growth indexes as the models describe them, and undoes them."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.migrations import alembic_config, upgrade
from service.models import Base

TABLES = {"import_jobs", "import_rejections"}
INDEXES = {"ix_subscriber_events_kind_at", "ix_consent_records_kind_at"}


def concerns_0014(difference: Any) -> bool:
    """Whether one of autogenerate's differences is about what 0014 makes."""
    if isinstance(difference, list):  # column changes come as a list of tuples
        return any(concerns_0014(d) for d in difference)
    names = {getattr(part, "name", None) for part in difference[1:] if hasattr(part, "name")}
    tables = {getattr(getattr(part, "table", None), "name", None) for part in difference[1:]}
    return bool((names | tables) & (TABLES | INDEXES)) or any(
        isinstance(part, str) and part in TABLES for part in difference)


def test_the_schema_matches_the_models_and_downgrades_cleanly(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, Base.metadata) if concerns_0014(d)]
        assert differences == []
        command.downgrade(alembic_config(fresh_url), "0011")
        inspector = inspect(engine)
        assert not TABLES & set(inspector.get_table_names())
        assert not {i["name"] for i in inspector.get_indexes("subscriber_events")} & INDEXES
        upgrade(fresh_url)
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        assert "ix_consent_records_kind_at" in {i["name"] for i in inspector.get_indexes("consent_records")}
    finally:
        engine.dispose()
