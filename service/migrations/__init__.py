"""Alembic migrations; `upgrade(url)` is what `chapar db upgrade` and the tests call."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


UPGRADE_HINT = 'run "chapar db upgrade"'


def schema_problem(engine: Engine) -> str | None:
    """What is wrong with the database's schema in one line, or None when it is the newest.

    One query (the Alembic version table) and a read of the migration scripts' headers.
    """
    scripts = ScriptDirectory(str(HERE))
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        # The driver's message says what failed (refused connection, unknown database)
        # on its first line; the rest is SQLAlchemy's advice and a link.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"cannot reach the database: {reason[0] if reason else type(exc).__name__}"
    if current == set(scripts.get_heads()):
        return None
    if not current:
        return f"the database is not set up: {UPGRADE_HINT}"
    if not current <= {script.revision for script in scripts.walk_revisions()}:
        return "the database was migrated by a newer version of Chapar: run that version"
    return f"the database schema is behind this version of Chapar: {UPGRADE_HINT}"
