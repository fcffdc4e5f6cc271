"""What the `chapar` commands start from: a Runtime on a database whose schema is current."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from service.db import where
from service.migrations import schema_problem
from service.ops.outages import first_line
from service.runtime import Runtime
from service.settings import Settings

# sysexits' EX_TEMPFAIL: a temporary failure, worth running again later (a cron job,
# a systemd unit's restart, a deploy script can tell it from a usage error).
EXIT_DATABASE_UNREACHABLE = 75


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
