"""Following whether the database answers, from one process: one warning per outage, one record.

Each process keeps one OutageTracker (`Runtime.database_outages`) and tells it what
it sees: a failure when the database could not be reached (a page answering 503, a
periodic task skipping its run, the heartbeat or the ops watcher failing), a success
whenever a connection is handed out again. The first failure logs one warning with
where the database is and why; later failures are quiet, so a tick every few seconds
does not fill the log; the first success after them logs how long it lasted and keeps
the finished Outage. The incident log cannot be written while the database is down,
so beat's ops watcher writes the outages its process saw as soon as it is back
(`write_incidents`); other processes only log, so one outage is one incident.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import UNAVAILABLE, unavailable
from service.ops import incidents
from service.persian import jalali_datetime, persian_digits

log = logging.getLogger(__name__)
KEPT = 20  # finished outages kept for the watcher to write; older ones are only in the log


@dataclass(frozen=True)
class Outage:
    """A time the database could not be reached, from the first failure seen to the first success."""

    where: str  # host:port
    started_at: datetime
    ended_at: datetime
    reason: str  # the driver's first line at the first failure

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


def first_line(exc: BaseException) -> str:
    """The driver's own words, first line only (SQLAlchemy appends advice and a link)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


class OutageTracker:
    """One process's view of whether the database answers; safe to call from any thread."""

    def __init__(self, where: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._since: datetime | None = None
        self._reason = ""
        self._ended: deque[Outage] = deque(maxlen=KEPT)
        # Every failure noted so far, in this process: a connection held since before
        # the last one may be dead (service.delivery.sender's held connection).
        self.failures = 0

    @property
    def down_since(self) -> datetime | None:
        """When the current outage began, or None while the database answers."""
        return self._since

    def seconds_down(self) -> float:
        """How long the current outage has lasted so far (0 while the database answers)."""
        since = self._since
        return 0.0 if since is None else (self._clock() - since).total_seconds()

    def failed(self, exc: BaseException) -> bool:
        """Note that the database could not be reached; True (and a warning) if an outage begins."""
        with self._lock:
            self.failures += 1
            if self._since is not None:
                return False
            self._since, self._reason = self._clock(), first_line(exc)
        log.warning("database at %s unreachable (%s); waiting for it to come back",
                    self.where, self._reason)
        return True

    def succeeded(self) -> Outage | None:
        """Note that the database answered; the outage this ends, if one was going on."""
        if self._since is None:  # the common case, without taking the lock
            return None
        with self._lock:
            if self._since is None:
                return None
            outage = Outage(self.where, self._since, self._clock(), self._reason)
            self._since = None
            self._ended.append(outage)
        log.warning("database at %s reachable again after %.0f s", self.where, outage.seconds)
        return outage

    def take_ended(self) -> list[Outage]:
        """The outages that ended since the last call, oldest first (for the incident log)."""
        with self._lock:
            ended = list(self._ended)
            self._ended.clear()
        return ended

    def give_back(self, outages: list[Outage]) -> None:
        """Keep outages whose record could not be written, to be written next time."""
        with self._lock:
            self._ended.extendleft(reversed(outages))

    def follow(self, engine: Engine) -> OutageTracker:
        """Count every connection the engine hands out (after its pre-ping) as a success."""
        event.listen(engine, "checkout", lambda *_: self.succeeded())
        return self


@contextmanager
def skipped_while_unreachable(tracker: OutageTracker) -> Iterator[None]:
    """Run a periodic job's body; if the database cannot be reached, note it and skip this run.

    The job runs again on its next tick. Its units of work are each one transaction,
    so a run cut short leaves nothing half-written.
    """
    try:
        yield
    except UNAVAILABLE as exc:
        if not unavailable(exc):
            raise
        tracker.failed(exc)
    else:
        tracker.succeeded()


def lasted(seconds: float) -> str:
    """A duration in Persian words and digits: «۳ دقیقه و ۵ ثانیه»."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{persian_digits(n)} {unit}" for n, unit in
             ((hours, "ساعت"), (minutes, "دقیقه"), (secs, "ثانیه")) if n]
    return " و ".join(parts) or "کمتر از یک ثانیه"


def record(session: Session, outage: Outage, tz: ZoneInfo) -> None:
    """One `database.unreachable` incident: at its start, saying how long it lasted and why."""
    detail = (f"{lasted(outage.seconds)} در دسترس نبود؛ از {jalali_datetime(outage.ended_at, tz)} "
              f"دوباره پاسخ داد. ({outage.reason})")
    incidents.record(session, incidents.DATABASE_UNREACHABLE, outage.started_at, detail,
                     subject=outage.where)
