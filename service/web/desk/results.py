"""Results on the desk: every sent issue's figures with a trend chart, and one issue's page.

The figures come from service.digests.results (the API and `chapar digest stats`
read the same function); the chart is an SVG drawn here from those figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from service.digests import results
from service.digests.click_counts import BURST, HEAD, SCANNER, TOO_SOON
from service.digests.clicks import counting
from service.digests.results import ClickFigures, IssueResults
from service.web.desk.access import current_viewer, guard, runtime
from service.web.desk.view import desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

# What the trend draws for each issue: (figure, Persian label, CSS class).
SERIES = (("bounced", "برگشتی", "bounced"), ("unsubscribed", "لغو عضویت", "unsubscribed"),
          ("complaints", "شکایت", "complaints"))
CHART_HEIGHT = 120
SLOT = 36  # horizontal room for one issue's bars
# Why clicks were set aside as not likely a person's, as the issue's page names them.
FILTERED_LABELS = (
    (HEAD, "درخواست HEAD (صفحه باز نشد)"),
    (SCANNER, "پویشگر پیوند یا ربات شناخته‌شده"),
    (TOO_SOON, "چند ثانیه پس از ارسال"),
    (BURST, "چند پیوند در یک ثانیه از یک دستگاه"),
)
# What the desk says about the mode in force (CHAPAR_TRACK_CLICKS).
CLICK_MODES = {
    "false": "شمارش کلیک خاموش است.",
    "true": "شمارش کلیک روشن است: برای هر خبر، بی‌آنکه ثبت شود چه کسی کلیک کرده است.",
    "per-reader": "شمارش کلیک برای هر خواننده روشن است: عضوی که کلیک کرده هم ثبت می‌شود.",
}
BAR_WIDTH = 120  # one article's bar, in SVG units


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


@dataclass(frozen=True)
class ArticleBar:
    """One article's clicks as two bars on one scale, drawn from the right."""

    all_width: float
    human_width: float


def article_bars(clicks: ClickFigures) -> list[ArticleBar]:
    return [ArticleBar(round(BAR_WIDTH * a.clicks / clicks.most, 1),
                       round(BAR_WIDTH * a.human_clicks / clicks.most, 1))
            for a in clicks.articles]


def figures_of(request: Request, number: int) -> IssueResults:
    rt = runtime(request)
    with rt.sessions() as session:
        issue = results.issue_by_number(session, number)
        if issue is None:
            raise HTTPException(404, "no such issue")
        return results.issue_results(session, issue,
                                     counting_clicks=counting(rt.settings.track_clicks))


@router.get("/desk/results")
def overview(request: Request) -> Response:
    rt = runtime(request)
    with rt.sessions() as session:
        recent = results.recent_results(session,
                                        counting_clicks=counting(rt.settings.track_clicks))
    return desk_page(request, "results.html", current_viewer(request), recent=recent,
                     trend=trend(recent), series=SERIES,
                     click_mode=CLICK_MODES[rt.settings.track_clicks],
                     clicks_shown=any(r.click_figures is not None for r in recent))


@router.get("/desk/issues/{number}/results")
def issue_page(request: Request, number: int) -> Response:
    figures = figures_of(request, number)
    clicks = figures.click_figures
    return desk_page(request, "issue_results.html", current_viewer(request), r=figures,
                     click_mode=CLICK_MODES[runtime(request).settings.track_clicks],
                     filtered_labels=FILTERED_LABELS, bar_width=BAR_WIDTH,
                     bars=article_bars(clicks) if clicks is not None else [])
