"""Tell ops by email when something needs a human, at most once per condition per hour.

The watcher runs inside beat (a thread, so it still runs when every worker is gone)
and as `chapar ops watch`: it records newly lost workers in the incident log, emails
CHAPAR_OPS_EMAILS about the conditions in force through the one send path
(outbox.send_email), and prunes the incident log. "Once an hour" is kept as a mark
per condition in the database, so several beats or a restart do not repeat it.

The watcher also looks whether the database answers every few seconds: while it
cannot be reached the watcher says so once, and as soon as it answers writes the
outage to the incident log (when it began, how long it lasted): see outages.py.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from service.clock import utcnow
from service.db import UNAVAILABLE, unavailable, unit_of_work
from service.delivery.outbox import NotSent, send_email
from service.ops import incidents, marks, outages, writers
from service.ops.conditions import Condition
from service.ops.outages import first_line
from service.ops.status import snapshot
from service.ops.workers import record_losses
from service.persian import jalali_datetime, single_line
from service.runtime import Runtime

log = logging.getLogger(__name__)
REPEAT_AFTER = timedelta(hours=1)
PROBE_SECONDS = 5.0  # how often the watcher looks whether the database answers


def due_alerts(rt: Runtime, found: list[Condition], now: datetime) -> list[Condition]:
    """The conditions not emailed within the last hour."""
    with rt.sessions() as session:
        sent = marks.read(session)
    return [c for c in found
            if (mark := sent.get(f"alert:{c.key}")) is None or now - mark.last_at >= REPEAT_AFTER]


def watch_once(rt: Runtime, now: datetime) -> list[Condition]:
    """One pass: losses to the incident log, due alerts emailed, old incidents and writers pruned."""
    snap = snapshot(rt, now)
    with unit_of_work(rt.sessions) as session:
        record_losses(session, snap.workers, now)
        incidents.prune(session, now, rt.settings.ops_incident_retention_days)
        writers.prune(session, now)
    due = due_alerts(rt, snap.conditions, now)
    addresses = rt.settings.ops_addresses
    if not due or not addresses:
        return due
    context: dict[str, object] = {
        "conditions": due, "list_name": rt.settings.list_name,
        "read_at": jalali_datetime(now, rt.settings.tz), "console_url": rt.url("/desk/ops"),
    }
    # The HTML's <title> is the subject: render it first, as every email does.
    context["subject"] = single_line(
        rt.email_templates.env.get_template("ops-alert/subject.txt").render(context))
    email = rt.email_templates.render("ops-alert", context)
    delivered = False
    for address in addresses:
        try:
            result = send_email(rt, email, address, kind="alert", now=now)
        except NotSent as exc:
            log.warning("ops alert to %s not sent: %s", address, exc)
            continue
        delivered = delivered or result.kind == "sent"
    if delivered:
        with unit_of_work(rt.sessions) as session:
            for condition in due:
                marks.record(session, f"alert:{condition.key}", now)
                incidents.record(session, incidents.ALERT_SENT, now, condition.text,
                                 subject=condition.key)
    return due


def write_outages(rt: Runtime) -> int:
    """Reach the database, then write the outages this process saw end; returns how many.

    Raises what an unreachable database raises; an outage whose record could not be
    written is kept for the next call.
    """
    tracker = rt.database_outages
    with rt.engine.connect():
        pass  # handed out after its pre-ping, or freshly made: the database answers
    ended = tracker.take_ended()
    if not ended:
        return 0
    try:
        with unit_of_work(rt.sessions) as session:
            for outage in ended:
                outages.record(session, outage, rt.settings.tz)
    except BaseException:
        tracker.give_back(ended)
        raise
    return len(ended)


class Watcher:
    """watch_once every beat tick, in a daemon thread of the beat process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chapar-ops-watch", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = self.rt.settings.beat_tick_seconds
        due = time.monotonic() + tick
        # Looking at the database every few seconds (a pooled connection's pre-ping) dates an outage's
        # start and end to within that, while the watching itself runs once a tick.
        while not self._stop.wait(min(tick, PROBE_SECONDS)):
            watch = time.monotonic() >= due
            if watch:
                due = time.monotonic() + tick
            self.tick(utcnow(), watch=watch)

    def tick(self, now: datetime, *, watch: bool = True) -> None:
        """Look at the database (writing the outages that ended), then one pass if `watch`.

        Nothing that goes wrong in it ends the watching.
        """
        try:
            write_outages(self.rt)
        except UNAVAILABLE as exc:
            if not unavailable(exc):
                raise
            self.rt.database_outages.failed(exc)  # one warning per outage, not one per look
            return
        if not watch:
            return
        try:
            watch_once(self.rt, now)
        except UNAVAILABLE as exc:
            # Only a failed look begins an outage: a query that timed out is not one, and
            # a database that went away since is seen at the next look.
            log.warning("ops watch skipped: %s", first_line(exc))
        except Exception:
            log.exception("ops watch failed")

    def stop(self) -> None:
        self._stop.set()

