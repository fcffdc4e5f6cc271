"""The conditions that need a human: one list, read by the console, the alert emails and status.

The same five are Prometheus alert rules in deploy/prometheus/alerts.yml, so a site
with Prometheus and a site without it are told about the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from service.ops.mailflow import GMAIL_COMPLAINT_TARGET
from service.ops.workers import ALIVE

if TYPE_CHECKING:
    from service.ops.status import Snapshot
    from service.settings import Settings

SEND_STALLED = "send-stalled"
NO_WORKER = "no-worker"
BEAT_NOT_TICKING = "beat-not-ticking"
COMPLAINT_RATE = "complaint-rate"
FEED_FAILING = "feed-failing"
FEED_FAILING_FOR = timedelta(hours=1)
BEAT_LATE_TICKS = 3  # a tick this many periods late means beat (or every worker) stopped


@dataclass(frozen=True)
class Condition:
    key: str
    text: str  # Persian, one sentence, for the console and the alert email


def conditions(snap: Snapshot, settings: Settings, now: datetime) -> list[Condition]:
    found: list[Condition] = []
    issue = snap.issue
    sending = issue is not None and issue.status == "sending"
    alive = [w for w in snap.workers if w.state == ALIVE]
    if snap.workers_known and not alive and (sending or snap.workers):
        found.append(Condition(NO_WORKER, "هیچ کارگری زنده نیست: نامه‌ای فرستاده نمی‌شود."))
    stall = timedelta(minutes=settings.ops_stall_minutes)
    if sending and issue is not None and snap.oldest_due_at is not None \
            and now - snap.oldest_due_at >= stall \
            and now - (issue.last_progress or issue.started_at or now) >= stall:
        found.append(Condition(SEND_STALLED, f"ارسال شمارهٔ {issue.number} گیر کرده: ردیف‌های "
                                             f"آماده هست ولی {settings.ops_stall_minutes:g} دقیقه "
                                             "است که نامه‌ای نرفته."))
    tick = snap.machine.beat_tick
    late = timedelta(seconds=settings.beat_tick_seconds * BEAT_LATE_TICKS)
    if tick is not None and now - tick.last_at > late:
        found.append(Condition(BEAT_NOT_TICKING, "زمان‌بند (beat) تیک نمی‌زند."))
    over = [r for r in snap.rates if r.complaint_rate > GMAIL_COMPLAINT_TARGET]
    if over:
        r = over[0]
        found.append(Condition(COMPLAINT_RATE, f"نرخ شکایت شمارهٔ {r.number} "
                                               f"{r.complaint_rate:.2%} است (بیش از ۰٫۱٪ جیمیل)."))
    feed = snap.machine.feed
    if feed is not None and feed.failing_since is not None \
            and now - feed.failing_since >= FEED_FAILING_FOR:
        found.append(Condition(FEED_FAILING, f"خوراک سایت یک ساعت است خوانده نمی‌شود: "
                                             f"{feed.last_error or ''}"))
    return found
