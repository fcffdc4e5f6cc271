"""`chapar digest ...`: build and look at digest issues."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from service.clock import utcnow
from service.commands import load_runtime
from service.db import unit_of_work
from service.mail.placeholders import with_sample_links


@click.group()
def digest() -> None:
    """The weekly digest."""


def write_preview(html: str, text: str, folder: Path, number: int,
                  public_url: str) -> tuple[Path, Path]:
    """Write an issue's HTML and text as a reader sees them, with sample personal links."""
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / f"issue-{number}.html"
    text_path = folder / f"issue-{number}.txt"
    html_path.write_text(with_sample_links(html, public_url), encoding="utf-8")
    text_path.write_text(with_sample_links(text, public_url), encoding="utf-8")
    return html_path, text_path


@digest.command("build")
@click.option("--intro", default=None, help="The editor's introduction, in Persian.")
def build(intro: str | None) -> None:
    """Build the next issue as a draft and write a preview of it."""
    from service.digests.build import build_issue

    rt = load_runtime()
    try:
        with unit_of_work(rt.sessions) as session:
            result = build_issue(session, rt.settings, utcnow(), intro=intro)
            if result.issue is None:
                click.echo(f"no issue built: {result.reason}")
                return
            issue = result.issue
            number, subject, count = issue.number, issue.subject, len(issue.articles)
            html, text = issue.html, issue.text
            replaced = result.replaced
        html_path, text_path = write_preview(html, text, rt.settings.data_dir / "previews", number,
                                             rt.settings.public_url)
        click.echo(f"built draft issue {number} with {count} articles: {subject}")
        if replaced:
            click.echo("  it replaces the unsent draft " + ", ".join(map(str, replaced)))
        click.echo(f"  preview: {html_path.resolve().as_uri()}")
        click.echo(f"  text:    {text_path}")
    finally:
        rt.close()


@digest.command("preview")
@click.argument("number", type=int)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the files (default: DATA_DIR/previews).")
def preview(number: int, output: Path | None) -> None:
    """Write issue NUMBER's HTML and text to files, with sample personal links."""
    from service.digests.models import Issue

    rt = load_runtime()
    try:
        with rt.sessions() as session:
            issue = session.scalars(select(Issue).where(Issue.number == number)).one_or_none()
            if issue is None:
                raise click.ClickException(f"there is no issue {number}")
            html, text = issue.html, issue.text
        paths = write_preview(html, text, output or rt.settings.data_dir / "previews", number,
                              rt.settings.public_url)
        for path in paths:
            click.echo(str(path))
    finally:
        rt.close()
