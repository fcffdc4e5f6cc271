"""What the `chapar` commands start from: a Runtime on a database whose schema is current."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from service.db import where
from service.migrations import schema_problem
from service.ops.outages import first_line
from service.runtime import Runtime
from service.settings import Settings

# sysexits' EX_TEMPFAIL: a temporary failure, worth running again later (a cron job,
# a systemd unit's restart, a deploy script can tell it from a usage error).
EXIT_DATABASE_UNREACHABLE = 75


class LazyGroup(click.Group):
    """A command group whose subcommands are imported when one of them is run or listed.

    `lazy` maps a subcommand's name to "module:attribute" (the command) or to "module"
    (importing it adds the command to this group, with the group's own decorator).
    Importing every area's commands at start cost each `chapar` command a quarter to
    two fifths of its run (`chapar digest articles 1`: 2.6 s, now 2.0 s, on a slow
    2-core machine).
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            imported = importlib.import_module(module)
            if attribute:
                self.add_command(getattr(imported, attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


class DatabaseUnreachable(click.ClickException):
    """The command needs the database and cannot reach it: one plain message, not a traceback."""

    exit_code = EXIT_DATABASE_UNREACHABLE

    def __init__(self, database_url: str, exc: BaseException) -> None:
        at = where(database_url)
        super().__init__(
            f"the database at {at} is unreachable ({first_line(exc)}); "
            "run the command again when it is back (unfinished work was not saved).\n"
            f"پایگاه داده در {at} در دسترس نیست؛ وقتی دوباره در دسترس بود، "
            "فرمان را دوباره اجرا کنید (کار ناتمام ثبت نشده است).")


def load_runtime(settings: Settings | None = None) -> Runtime:
    """A Runtime for a command, or one line saying why the database cannot be used yet.

    Checked once here rather than failing somewhere inside a command with a traceback
    when the schema was never created or lags behind the code.
    """
    rt = Runtime.from_settings(settings or Settings())
    problem = schema_problem(rt.engine)
    if problem:
        rt.close()
        raise click.ClickException(problem)
    return rt


@contextmanager
def opened_runtime(settings: Settings | None = None) -> Iterator[Runtime]:
    """load_runtime, closed when the command is done."""
    rt = load_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


def require_current_schema(settings: Settings) -> None:
    """For commands that start long-running processes with their own Runtimes."""
    load_runtime(settings).close()
