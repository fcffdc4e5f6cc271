"""`chapar digest ...`: build and look at digest issues."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.commands import LazyGroup, load_runtime
from service.db import unit_of_work
from service.mail.placeholders import with_sample_links
from service.settings import Settings
from service.staff.audit import CLI

if TYPE_CHECKING:
    from service.digests.models import Issue


# Commands of other areas that act on an issue: imported only when one of them runs.
_DELIVERY, _REVIEW = "service.delivery.commands", "service.digests.review_commands"
MORE_COMMANDS = {
    **dict.fromkeys(("send", "pause", "resume", "cancel", "retry-failed"), _DELIVERY),
    **dict.fromkeys(("list", "review", "approve", "send-back", "schedule", "send-now"), _REVIEW),
    "check": "service.digests.check_command",
    "stats": "service.digests.results_command",
}


@click.group(cls=LazyGroup, lazy=MORE_COMMANDS)
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


def edit_issue(number: int, change: Callable[[Session, Settings, Issue], str]) -> None:
    """Run one editing function on issue NUMBER in one transaction; echo what it says."""
    from service.digests.editing import EditRefused, find_issue

    rt = load_runtime()
    try:
        with unit_of_work(rt.sessions) as session:
            message = change(session, rt.settings, find_issue(session, number))
        click.echo(message)
    except EditRefused as exc:
        raise click.ClickException(f"{exc.persian} | {exc}") from exc
    finally:
        rt.close()


def item_at(issue: Issue, position: int) -> int:
    """The id of the article at POSITION (1 = first, as `chapar digest articles` lists them)."""
    from service.digests.editing import EditRefused, ordered_items

    items = ordered_items(issue)
    if not 1 <= position <= len(items):
        raise EditRefused(f"issue {issue.number} has no article at position {position}",
                          "در این جایگاه خبری نیست.")
    return items[position - 1].id


@digest.command("articles")
@click.argument("number", type=int)
def list_issue_articles(number: int) -> None:
    """Issue NUMBER's articles in the order readers see them."""
    from service.digests.editing import ordered_items, pinned_article_ids

    def show(session: Session, settings: Settings, issue: Issue) -> str:
        pinned = pinned_article_ids(session, issue)
        lines = [f"issue {issue.number} ({issue.status.value}): {issue.subject}",
                 f"  preheader: {issue.preheader}",
                 f"  grouped by section: {'yes' if issue.group_by_section else 'no'}"]
        for position, item in enumerate(ordered_items(issue), start=1):
            flags = ",".join(name for name, on in (
                ("lead", item.article_id == issue.lead_article_id),
                ("pinned", item.article_id in pinned)) if on)
            lines.append(f"{position:>3}. {item.title} [{item.section or '-'}]"
                         f"{' (' + flags + ')' if flags else ''}  {item.url}")
        return "\n".join(lines)

    edit_issue(number, show)


@digest.command("edit")
@click.argument("number", type=int)
@click.option("--subject", default=None, help="The subject; an empty one follows the articles again.")
@click.option("--preheader", default=None, help="The inbox preview line; empty: automatic.")
@click.option("--intro", default=None, help="Plain text; a blank line starts a paragraph.")
def edit(number: int, subject: str | None, preheader: str | None, intro: str | None) -> None:
    """Edit issue NUMBER's subject, preheader and introduction."""
    from service.digests.editing import edit_text

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        changed = edit_text(session, settings, issue, CLI, utcnow(), subject=subject,
                            preheader=preheader, intro=intro)
        return f"changed: {', '.join(changed)}" if changed else "nothing changed"

    edit_issue(number, change)


@digest.command("move")
@click.argument("number", type=int)
@click.argument("position", type=int)
@click.argument("direction", type=click.Choice(["up", "down"]))
def move_article(number: int, position: int, direction: Literal["up", "down"]) -> None:
    """Move the article at POSITION of issue NUMBER up or down by one."""
    from service.digests.editing import move

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        move(session, settings, issue, item_at(issue, position), direction, CLI, utcnow())
        return f"moved {direction}"

    edit_issue(number, change)


@digest.command("lead")
@click.argument("number", type=int)
@click.argument("position", type=int, required=False)
def lead(number: int, position: int | None) -> None:
    """Make the article at POSITION the lead story; without POSITION, have none."""
    from service.digests.editing import set_lead

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        item = item_at(issue, position) if position is not None else None
        set_lead(session, settings, issue, item, CLI, utcnow())
        return "lead story set" if item is not None else "no lead story"

    edit_issue(number, change)


@digest.command("exclude")
@click.argument("number", type=int)
@click.argument("position", type=int)
def exclude_article(number: int, position: int) -> None:
    """Take the article at POSITION out of issue NUMBER (and out of later builds)."""
    from service.digests.editing import exclude

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        exclude(session, settings, issue, item_at(issue, position), CLI, utcnow())
        return "excluded"

    edit_issue(number, change)


@digest.command("pin")
@click.argument("number", type=int)
@click.argument("position", type=int)
@click.option("--off", is_flag=True, help="Unpin instead.")
def pin_article(number: int, position: int, off: bool) -> None:
    """Pin the article at POSITION so a rebuild keeps it."""
    from service.digests.editing import pin

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        pin(session, settings, issue, item_at(issue, position), not off, CLI, utcnow())
        return "unpinned" if off else "pinned"

    edit_issue(number, change)


@digest.command("group")
@click.argument("number", type=int)
@click.argument("state", type=click.Choice(["on", "off"]))
def group(number: int, state: str) -> None:
    """Group issue NUMBER's articles by section (on) or show one list (off)."""
    from service.digests.editing import set_grouping

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        set_grouping(session, settings, issue, state == "on", CLI, utcnow())
        return f"grouping by section {state}"

    edit_issue(number, change)


@digest.command("rebuild")
@click.argument("number", type=int)
def rebuild_command(number: int) -> None:
    """Choose draft NUMBER's articles again; the editor's text, lead and grouping stay."""
    from service.digests.editing import rebuild

    def change(session: Session, settings: Settings, issue: Issue) -> str:
        new = rebuild(session, settings, issue, CLI, utcnow())
        return f"rebuilt issue {new.number} with {len(new.articles)} articles"

    edit_issue(number, change)


@digest.command("add-url")
@click.argument("number", type=int)
@click.argument("url")
def add_url(number: int, url: str) -> None:
    """Add the article at URL (known, or read from its page) to the end of issue NUMBER."""
    from service.digests.editing import EditRefused, add_by_url

    rt = load_runtime()
    try:
        click.echo(f"added: {add_by_url(rt, number, url, CLI, utcnow())}")
    except EditRefused as exc:
        raise click.ClickException(f"{exc.persian} | {exc}") from exc
    finally:
        rt.close()


@digest.command("test-send")
@click.argument("number", type=int)
@click.option("--to", "extra", multiple=True, help="Another address (repeatable).")
def test_send(number: int, extra: tuple[str, ...]) -> None:
    """Send issue NUMBER, subject prefixed «[آزمایشی]», to CHAPAR_TEST_SEND_ADDRESSES and --to."""
    from service.delivery.outbox import NotSent
    from service.digests.editing import EditRefused, recipients_of_test, send_test
    from service.subscribers.addresses import AddressError

    rt = load_runtime()
    try:
        recipients = recipients_of_test(rt.settings, None, extra)
        results = send_test(rt, number, recipients, CLI, utcnow())
    except AddressError as exc:
        raise click.ClickException(exc.message) from exc
    except EditRefused as exc:
        raise click.ClickException(f"{exc.persian} | {exc}") from exc
    except NotSent as exc:
        raise click.ClickException(f"not sent: {exc}") from exc
    finally:
        rt.close()
    for to, result in results:
        click.echo(f"{to}: {result.kind} {result.code} {result.text}".rstrip())
    if any(result.kind != "sent" for _, result in results):
        raise SystemExit(1)
