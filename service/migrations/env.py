"""Alembic environment: the URL comes from the caller's config, never from a file."""

from __future__ import annotations

import os

from alembic import context

from service.db import make_engine
from service.models import Base

config = context.config


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
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
