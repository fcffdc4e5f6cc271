"""`chapar digest stats N [--json]`: one issue's results, as the desk and the API show them."""

from __future__ import annotations

import json

import click

from service.commands import opened_runtime
from service.digests import results
from service.digests.clicks import counting
from service.digests.commands import digest

LINES = (("sent", "sent"), ("deferred", "deferred"), ("failed", "failed"),
         ("pending", "pending"), ("bounced", "bounced"), ("bounced_hard", "  hard"),
         ("bounced_soft", "  soft"), ("complaints", "complaints"),
         ("unsubscribed", "unsubscribed"))


def describe(figures: results.IssueResults) -> list[str]:
    """The figures as lines for a terminal: a count and its rate in per cent."""
    lines = [f"issue {figures.issue_number} ({figures.status}): {figures.recipients} recipients"]
    for key, label in LINES:
        figure: results.Figure = getattr(figures, key)
        rate = "-" if figure.rate is None else f"{figure.rate * 100:.2f}%"
        lines.append(f"  {label:<13} {figure.count:>8}  {rate:>8}")
    clicks = figures.click_figures
    if clicks is None:
        lines.append("  clicks: not counted")
    else:
        lines.append(f"  {'clicks':<13} {clicks.clicks:>8}")
        lines.append(f"  {'  human':<13} {clicks.human_clicks:>8}")
        for reason, count in clicks.filtered.items():
            lines.append(f"  {'  ' + reason:<13} {count:>8}")
        for article in clicks.articles:
            lines.append(f"    article {article.article_id}: {article.clicks} clicks, "
                         f"{article.human_clicks} human  {article.url}")
    lines.append("  opens: not measured (Apple Mail Privacy Protection opens every message)")
    return lines


@digest.command("stats")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(number: int, as_json: bool) -> None:
    """Show the results of issue NUMBER: deliveries, bounces, complaints, unsubscribes, clicks."""
    with opened_runtime() as rt, rt.sessions() as session:
        issue = results.issue_by_number(session, number)
        if issue is None:
            raise click.ClickException(f"no issue number {number}")
        figures = results.issue_results(session, issue,
                                        counting_clicks=counting(rt.settings.track_clicks))
    click.echo(json.dumps(figures.as_dict(), ensure_ascii=False, indent=2) if as_json
               else "\n".join(describe(figures)))
