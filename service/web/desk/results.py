"""Results on the desk: every sent issue's figures with a trend chart, and one issue's page.

The figures come from service.digests.results (the API and `chapar digest stats`
read the same function); the chart is an SVG drawn here from those figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from service.digests import results
from service.digests.results import IssueResults
from service.web.desk.access import current_viewer, guard, runtime
from service.web.desk.view import desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

# What the trend draws for each issue: (figure, Persian label, CSS class).
SERIES = (("bounced", "برگشتی", "bounced"), ("unsubscribed", "لغو عضویت", "unsubscribed"),
          ("complaints", "شکایت", "complaints"))
CHART_HEIGHT = 120
SLOT = 36  # horizontal room for one issue's bars


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Trend:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[int, int]]  # (x, issue number)
    top: float  # the rate the chart's full height stands for


def trend(figures: list[IssueResults]) -> Trend:
    """Bars of each issue's rates, oldest on the left, on one scale."""
    rates = [getattr(f, key).rate or 0.0 for f in figures for key, _, _ in SERIES]
    top = max([0.01, *rates])
    bars: list[Bar] = []
    labels: list[tuple[int, int]] = []
    for i, f in enumerate(figures):
        left = 8 + SLOT * i
        labels.append((left + SLOT // 2 - 4, f.issue_number))
        for j, (key, label, css) in enumerate(SERIES):
            rate = getattr(f, key).rate or 0.0
            height = round(CHART_HEIGHT * rate / top, 1)
            bars.append(Bar(left + 9 * j, CHART_HEIGHT - height, height, css,
                            f"{f.issue_number}: {label} {rate * 100:.2f}%"))
    return Trend(max(16 + SLOT * len(figures), 320), CHART_HEIGHT + 20, bars, labels, top)


def figures_of(request: Request, number: int) -> IssueResults:
    with runtime(request).sessions() as session:
        issue = results.issue_by_number(session, number)
        if issue is None:
            raise HTTPException(404, "no such issue")
        return results.issue_results(session, issue)


@router.get("/desk/results")
def overview(request: Request) -> Response:
    with runtime(request).sessions() as session:
        recent = results.recent_results(session)
    return desk_page(request, "results.html", current_viewer(request), recent=recent,
                     trend=trend(recent), series=SERIES)


@router.get("/desk/issues/{number}/results")
def issue_page(request: Request, number: int) -> Response:
    return desk_page(request, "issue_results.html", current_viewer(request),
                     r=figures_of(request, number))
