"""`chapar articles ...`: bring articles in by hand."""

from __future__ import annotations

from pathlib import Path

import click

from service.clock import utcnow
from service.commands import load_runtime
from service.db import unit_of_work


@click.group()
def articles() -> None:
    """The site's articles."""


@articles.command("fetch")
@click.argument("source", required=False)
def fetch_articles(source: str | None) -> None:
    """Fetch a feed (URL, or a file) and merge its articles; default: CHAPAR_FEED_URL."""
    from service.articles.fetch import FetchFailed, FetchRefused
    from service.articles.refresh import feed_policy, load_feed_file, refresh_feed

    rt = load_runtime()
    try:
        target = source or rt.settings.feed_url
        if not target:
            raise click.UsageError("give a feed URL or file, or set CHAPAR_FEED_URL")
        if target.startswith(("http://", "https://")):
            try:
                policy = feed_policy(rt.settings)
            except ValueError as exc:
                raise click.ClickException(f"CHAPAR_FEED_ALLOWED_HOSTS: {exc}") from exc
            try:
                report = refresh_feed(rt, target, utcnow(), policy)
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


@articles.command("list")
@click.option("--limit", default=30, show_default=True, type=int)
def list_articles(limit: int) -> None:
    """The newest articles with their ids and flags."""
    from service.articles.curation import recent_articles
    from service.persian import jalali_datetime

    rt = load_runtime()
    try:
        with rt.sessions() as session:
            for a in recent_articles(session, limit):
                flags = ("📌 " if a.pinned else "") + ("✗ " if a.excluded else "")
                when = jalali_datetime(a.published_at, rt.settings.tz)
                click.echo(f"{a.id:>6}  {flags}{when}  {a.title}")
    finally:
        rt.close()


def _mark(article_id: int, **flags: bool) -> None:
    from service.articles.curation import NoSuchArticle, mark

    rt = load_runtime()
    try:
        with unit_of_work(rt.sessions) as session:
            article = mark(session, article_id, **flags)
            state = "pinned" if article.pinned else "excluded" if article.excluded else "normal"
            click.echo(f"article {article.id} is {state}: {article.title}")
    except NoSuchArticle as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        rt.close()


@articles.command("pin")
@click.argument("article_id", type=int)
def pin(article_id: int) -> None:
    """Put an article first in the next issue (even if it is older than the window)."""
    _mark(article_id, pinned=True)


@articles.command("exclude")
@click.argument("article_id", type=int)
def exclude(article_id: int) -> None:
    """Keep an article out of every issue."""
    _mark(article_id, excluded=True)


@articles.command("reset")
@click.argument("article_id", type=int)
def reset(article_id: int) -> None:
    """Neither pinned nor excluded."""
    _mark(article_id, pinned=False, excluded=False)
