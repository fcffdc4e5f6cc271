"""`chapar digest check N [--json]`: the pre-send checks, as the desk and the send run them."""

from __future__ import annotations

import click
from sqlalchemy import select

from service.clock import utcnow
from service.commands import opened_runtime
from service.db import unit_of_work
from service.digests.checks import CheckReport, run_checks
from service.digests.commands import digest
from service.digests.models import Issue


def describe_report(report: CheckReport) -> list[str]:
    """The report as lines for a terminal: the outcome first, then each finding."""
    outcome = ("blocked" if report.blocked else
               f"blockers overridden by {report.overridden_by}" if report.overridden_by else "passed")
    clip = report.clip
    size = f"HTML {clip.html_bytes} bytes"
    if clip.cut_at is not None:
        size += (f"; Gmail cuts at byte {clip.cut_at}: last article shown whole: "
                 f"{clip.last_visible or '-'}; first one cut: {clip.first_cut or '-'}")
    lines = [f"issue {report.issue_number}: {outcome}; {size}; "
             f"links {report.links_total} ({report.links_pending} not checked yet)"]
    for found in report.items:
        lines.append(f"  [{found.severity.value}] {found.code}: {found.fa} | {found.en}"
                     + (f" — {found.detail}" if found.detail else ""))
    return lines


@digest.command("check")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--stored-links", is_flag=True,
              help="Use the link answers a worker stored instead of fetching every link now.")
def check(number: int, as_json: bool, stored_links: bool) -> None:
    """Run the pre-send checks on issue NUMBER; exit status 1 when a blocker stands."""
    with opened_runtime() as rt, unit_of_work(rt.sessions) as session:
        issue = session.scalars(select(Issue).where(Issue.number == number)).one_or_none()
        if issue is None:
            raise click.ClickException(f"no issue number {number}")
        report = run_checks(rt, session, issue, utcnow(), fetch_links=not stored_links)
    click.echo(report.as_json() if as_json else "\n".join(describe_report(report)))
    if report.blocked:
        raise SystemExit(1)
