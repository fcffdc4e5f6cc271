"""What the `chapar` commands start from: a Runtime on a database whose schema is current."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from service.migrations import schema_problem
from service.runtime import Runtime
from service.settings import Settings


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
