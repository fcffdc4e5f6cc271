"""The list's growth on the desk: weekly subscriptions, confirmations, unsubscribes, the rate.

The figures come from service.subscribers.growth.weekly_growth (`GET /api/v1/growth`
and `chapar subscribers growth` read the same function); the charts are SVG drawn
here from those figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.clock import utcnow
from service.subscribers.growth import DEFAULT_WEEKS, MAX_WEEKS, Growth, weekly_growth
from service.web.desk.access import current_viewer, guard, runtime
from service.web.desk.results import Bar
from service.web.desk.view import desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

# What the counts chart draws for each week: (figure, Persian label, CSS class).
SERIES = (("subscribed", "درخواست عضویت", "subscribed"), ("confirmed", "تأیید", "confirmed"),
          ("unsubscribed", "لغو عضویت", "unsubscribed"))
CHART_HEIGHT = 120
SLOT = 30  # horizontal room for one week's bars
WEEK_CHOICES = (4, 12, 26, 52)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[int, str]]  # (x, Jalali day and month of the week's Saturday)
    top: float  # what the chart's full height stands for


def week_labels(growth: Growth) -> list[tuple[int, str]]:
    """Under every other week's slot (a month's name is wider than one slot), or fewer on a long
    range; the current week always has one."""
    step = max(2, -(-len(growth.weeks) // 7))
    return [(8 + SLOT * i + SLOT // 2, week.short_label) for i, week in enumerate(growth.weeks)
            if (len(growth.weeks) - 1 - i) % step == 0]


def counts_chart(growth: Growth) -> Chart:
    """Bars of each week's counts, oldest on the left, on one scale."""
    top = max([1, *(getattr(w, key) for w in growth.weeks for key, _, _ in SERIES)])
    bars: list[Bar] = []
    for i, week in enumerate(growth.weeks):
        left = 8 + SLOT * i
        for j, (key, label, css) in enumerate(SERIES):
            count = getattr(week, key)
            height = round(CHART_HEIGHT * count / top, 1)
            bars.append(Bar(left + 8 * j, CHART_HEIGHT - height, height, css,
                            f"{week.label}: {label} {count}"))
    return Chart(max(16 + SLOT * len(growth.weeks), 320), CHART_HEIGHT + 20, bars, week_labels(growth),
                 float(top))


def rate_chart(growth: Growth) -> Chart:
    """One bar per week: the share of its requests confirmed so far, 0 to 100%."""
    bars: list[Bar] = []
    for i, week in enumerate(growth.weeks):
        left = 8 + SLOT * i
        rate = week.confirmation_rate
        if rate is not None:
            height = round(CHART_HEIGHT * rate, 1)
            bars.append(Bar(left + 4, CHART_HEIGHT - height, height, "rate",
                            f"{week.label}: {rate * 100:.1f}% ({week.requests_confirmed}/{week.requests})"))
    return Chart(max(16 + SLOT * len(growth.weeks), 320), CHART_HEIGHT + 20, bars, week_labels(growth), 1.0)


@router.get("/desk/growth")
def growth_page(request: Request, weeks: int = DEFAULT_WEEKS) -> Response:
    rt = runtime(request)
    weeks = max(1, min(weeks, MAX_WEEKS))
    with rt.sessions() as session:
        growth = weekly_growth(session, utcnow(), rt.settings.tz, weeks)
    return desk_page(request, "growth.html", current_viewer(request), growth=growth,
                     counts=counts_chart(growth), rates=rate_chart(growth), series=SERIES,
                     weeks=weeks, choices=WEEK_CHOICES, tz=rt.settings.tz)
