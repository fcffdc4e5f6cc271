"""Alembic environment: the URL comes from the caller's config, never from a file."""

from __future__ import annotations

import os
from typing import Any

from alembic import context

from service.db import make_engine
from service.models import Base

config = context.config


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """What autogenerate compares: not the ledger's foreign keys that SQLite still has.

    Migration 0023 replaced them with triggers on PostgreSQL, and the models no longer
    declare them; a revision that dropped them would fail there, where they are gone.
    """
    return not (type_ == "foreign_key_constraint" and reflected and compare_to is None
                and obj.table.name == "deliveries")


def run_migrations() -> None:
    # `alembic revision` in a checkout: CHAPAR_DATABASE_URL alone names the database; the
    # full Settings would also demand a secret, which writing a migration does not need.
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("CHAPAR_DATABASE_URL")
    if not url:
        from service.settings import Settings

        url = Settings().effective_database_url
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
