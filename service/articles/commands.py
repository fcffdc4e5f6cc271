"""`chapar articles ...`: bring articles in by hand."""

from __future__ import annotations

from pathlib import Path

import click

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.settings import Settings


@click.group()
def articles() -> None:
    """The site's articles."""


@articles.command("fetch")
@click.argument("source", required=False)
def fetch_articles(source: str | None) -> None:
    """Fetch a feed (URL, or a file) and merge its articles; default: CHAPAR_FEED_URL."""
    from service.articles.fetch import FetchFailed, FetchRefused
    from service.articles.refresh import load_feed_file, refresh_feed

    rt = Runtime.from_settings(Settings())
    try:
        target = source or rt.settings.feed_url
        if not target:
            raise click.UsageError("give a feed URL or file, or set CHAPAR_FEED_URL")
        if target.startswith(("http://", "https://")):
            try:
                report = refresh_feed(rt, target, utcnow())
            except (FetchFailed, FetchRefused) as exc:
                raise click.ClickException(str(exc)) from exc
        elif "://" in target:
            raise click.ClickException("only http and https feed URLs, or a local file, are read")
        else:
            path = Path(target)
            if not path.is_file():
                raise click.ClickException(f"no such file: {path}")
            with unit_of_work(rt.sessions) as session:
                report = load_feed_file(session, path, utcnow(), rt.settings.feed_max_bytes)
        for reason in report.skipped:
            click.echo(f"skipped {reason}", err=True)
        click.echo(f"{target}: {report}")
    finally:
        rt.close()
