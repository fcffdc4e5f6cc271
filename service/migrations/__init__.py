"""Alembic migrations; `upgrade(url)` is what `chapar db upgrade` and the tests call."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, column, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError

from service.db import UNAVAILABLE

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


UPGRADE_HINT = 'run "chapar db upgrade"'
VERSION_TABLE = table("alembic_version", column("version_num"))  # Alembic's default, kept by env.py


def schema_problem(engine: Engine) -> str | None:
    """What is wrong with the database's schema in one line, or None when it is the newest.

    A look at the Alembic version table and a read of the migration scripts. A database
    that cannot be reached is not a schema problem: its error (service.db.UNAVAILABLE)
    goes up to the command, which says so in one place.
    """
    scripts = ScriptDirectory(str(HERE))
    try:
        with engine.connect() as connection:
            # Read directly: Alembic's MigrationContext would log two lines on every command.
            current = set(connection.scalars(select(VERSION_TABLE.c.version_num))
                          ) if inspect(connection).has_table(VERSION_TABLE.name) else set()
    except UNAVAILABLE:
        raise  # the commands' one answer for that: see service/commands.py
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
