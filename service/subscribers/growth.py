"""The list's growth week by week: subscriptions, imports, confirmations, unsubscribes.

Weeks are Iranian weeks, Saturday to Friday in the settings' time zone (Tehran), so a
Friday-evening subscription in Tehran counts in the week that ends that Friday even
though it is already Saturday nowhere else. The desk's page, `GET /api/v1/growth` and
`chapar subscribers growth` all call `weekly_growth`.

Counts are aggregated in the database over the history tables (one query per table,
each week a bucket), so a long history costs a few index range scans, not a read of
every row:

- subscribed: requests to join from a form, the API or a reader's own link
  (events `subscribe`, `resubscribe_requested`, `resubscribe`);
- imported: addresses added by an import (event `import`), not part of the rate;
- confirmed: confirmation links followed, and readers' own resubscribe links
  (events `confirm`, `resubscribe`);
- unsubscribed: event `unsubscribe`;
- confirmation rate: of the requests that week that asked for a confirmation (the
  first consent record of each request, by its nonce), the share confirmed so far.
  A request confirmed in a later week counts for the week it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from service.persian import MONTHS, persian_digits, to_jalali
from service.subscribers.models import ConsentRecord, SubscriberEvent

SATURDAY = 5  # date.weekday()
DEFAULT_WEEKS = 12
MAX_WEEKS = 260

# Figure -> the event kinds it counts.
EVENT_KINDS: dict[str, tuple[str, ...]] = {
    "subscribed": ("subscribe", "resubscribe_requested", "resubscribe"),
    "imported": ("import",),
    "confirmed": ("confirm", "resubscribe"),
    "unsubscribed": ("unsubscribe",),
}


@dataclass(frozen=True)
class Week:
    start: datetime  # Saturday 00:00 in the zone, as an aware datetime in that zone
    end: datetime
    subscribed: int = 0
    imported: int = 0
    confirmed: int = 0
    unsubscribed: int = 0
    requests: int = 0  # requests that asked for a confirmation
    requests_confirmed: int = 0  # ... and have been confirmed since

    @property
    def confirmation_rate(self) -> float | None:
        return self.requests_confirmed / self.requests if self.requests else None

    @property
    def label(self) -> str:
        """The Jalali date of the week's Saturday, such as «۸ آذر ۱۴۰۵»."""
        j = to_jalali(self.start, ZoneInfo(str(self.start.tzinfo)))
        return persian_digits(f"{j.day} {MONTHS[j.month - 1]} {j.year}")

    @property
    def short_label(self) -> str:
        j = to_jalali(self.start, ZoneInfo(str(self.start.tzinfo)))
        return persian_digits(f"{j.day} {MONTHS[j.month - 1]}")

    def as_dict(self) -> dict[str, Any]:
        rate = self.confirmation_rate
        return {
            "week_start": self.start.isoformat(),
            "week_end": self.end.isoformat(),
            "label_fa": self.label,
            "subscribed": self.subscribed,
            "imported": self.imported,
            "confirmed": self.confirmed,
            "unsubscribed": self.unsubscribed,
            "requests": self.requests,
            "requests_confirmed": self.requests_confirmed,
            "confirmation_rate": None if rate is None else round(rate, 4),
        }


@dataclass(frozen=True)
class Growth:
    timezone: str
    read_at: datetime
    weeks: list[Week]  # oldest first; the last is the week in progress

    def total(self, figure: str) -> int:
        return sum(getattr(w, figure) for w in self.weeks)

    @property
    def confirmation_rate(self) -> float | None:
        requests = self.total("requests")
        return self.total("requests_confirmed") / requests if requests else None

    def as_dict(self) -> dict[str, Any]:
        rate = self.confirmation_rate
        return {
            "timezone": self.timezone,
            "read_at": self.read_at.isoformat(),
            "weeks": [w.as_dict() for w in self.weeks],
            "totals": {**{f: self.total(f) for f in (*EVENT_KINDS, "requests", "requests_confirmed")},
                       "confirmation_rate": None if rate is None else round(rate, 4)},
        }


def week_starts(now: datetime, tz: ZoneInfo, weeks: int) -> list[datetime]:
    """The Saturdays at 00:00 (in `tz`) that start the last `weeks` weeks, oldest first, and
    the Saturday after the current week (the end of the range)."""
    today = now.astimezone(tz).date()
    current = today - timedelta(days=(today.weekday() - SATURDAY) % 7)
    days: list[date] = [current - timedelta(weeks=k) for k in range(weeks - 1, -2, -1)]
    return [datetime.combine(d, time(0), tzinfo=tz) for d in days]


def bucket(column: Any, bounds: list[datetime]) -> ColumnElement[int]:
    """The index of the week `column` falls in; the caller keeps rows within the bounds."""
    return case(*[(column < bounds[i + 1], i) for i in range(len(bounds) - 1)], else_=-1)


def weekly_growth(session: Session, now: datetime, tz: ZoneInfo, weeks: int = DEFAULT_WEEKS) -> Growth:
    """The last `weeks` weeks (the current one included) of subscriptions, confirmations and more."""
    weeks = max(1, min(weeks, MAX_WEEKS))
    bounds = week_starts(now, tz, weeks)
    first, last = bounds[0], bounds[-1]
    figures: list[dict[str, int]] = [dict.fromkeys((*EVENT_KINDS, "requests", "requests_confirmed"), 0)
                                     for _ in range(weeks)]

    kinds = sorted({k for ks in EVENT_KINDS.values() for k in ks})
    events = (select(bucket(SubscriberEvent.at, bounds).label("week"), SubscriberEvent.kind.label("kind"))
              .where(SubscriberEvent.kind.in_(kinds), SubscriberEvent.at >= first,
                     SubscriberEvent.at < last)
              .subquery())
    for week, kind, count in session.execute(
            select(events.c.week, events.c.kind, func.count()).group_by(events.c.week, events.c.kind)):
        if 0 <= week < weeks:
            for figure, counted in EVENT_KINDS.items():
                if kind in counted:
                    figures[week][figure] += count

    request, earlier, confirmation = (aliased(ConsentRecord) for _ in range(3))
    is_first = ~exists().where(earlier.subscriber_id == request.subscriber_id, earlier.nonce == request.nonce,
                               earlier.kind == "subscribe", earlier.id < request.id)
    # A confirmation comes after its request, so only those since the range began can match;
    # joined rather than looked up row by row (PostgreSQL would estimate a per-row subquery
    # so dear that it spends a second compiling the query).
    confirmations = (select(confirmation.subscriber_id, confirmation.nonce)
                     .where(confirmation.kind == "confirm", confirmation.at >= first)
                     .distinct().subquery())
    requests = (select(bucket(request.at, bounds).label("week"),
                       confirmations.c.subscriber_id.label("confirmed"))
                .outerjoin(confirmations, and_(confirmations.c.subscriber_id == request.subscriber_id,
                                               confirmations.c.nonce == request.nonce))
                .where(and_(request.kind == "subscribe", request.nonce.is_not(None),
                            request.at >= first, request.at < last, is_first))
                .subquery())
    tally = select(requests.c.week, func.count(), func.count(requests.c.confirmed)).group_by(requests.c.week)
    for week, count, done in session.execute(tally):
        if 0 <= week < weeks:
            figures[week]["requests"] = count
            figures[week]["requests_confirmed"] = int(done or 0)

    return Growth(str(tz), now, [Week(bounds[i], bounds[i + 1], **figures[i]) for i in range(weeks)])


def describe(growth: Growth) -> list[str]:
    """The figures as lines for a terminal."""
    lines = [f"week starting (Saturday, {growth.timezone})  subscribed  imported  confirmed  "
             "unsubscribed  confirmation rate"]
    for w in growth.weeks:
        rate = "-" if w.confirmation_rate is None else f"{w.confirmation_rate * 100:.1f}%"
        lines.append(f"{w.start.date().isoformat():<33} {w.subscribed:>11} {w.imported:>9} {w.confirmed:>10} "
                     f"{w.unsubscribed:>13} {rate:>18}")
    return lines
