"""Two real `chapar beat` processes at once still give one issue per weekly slot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.clock import utcnow
from service.db import unit_of_work
from service.digests.models import Issue, IssueStatus, ScheduleSlot
from service.runtime import Runtime
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers
from tests.digests.factories import article
from tests.support.processes import ChaparProcess, start_worker
from tests.support.redis_server import PrivateRedis
from tests.support.smtp import SmtpRecorder

SUBSCRIBERS = 30


@pytest.fixture
def due_now(postgresql_url: str, private_redis: PrivateRedis, smtp: SmtpRecorder,
            tmp_path: Path) -> Iterator[Runtime]:
    """Settings whose weekly slot is this very minute in Tehran, sent automatically."""
    local = utcnow().astimezone(make_settings(tmp_path).tz)
    settings = make_settings(
        tmp_path, database_url=postgresql_url, broker_url=private_redis.url,
        redis_url=private_redis.url, smtp_url=smtp.url, digest_auto_send=True,
        digest_weekday=local.weekday(), digest_hour=local.hour, digest_minute=local.minute,
        beat_tick_seconds=1,
    )
    rt = Runtime.from_settings(settings)
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


@pytest.mark.chaos
def test_two_beat_processes_build_and_send_one_issue_per_slot(
        due_now: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    rt = due_now
    with unit_of_work(rt.sessions) as session:
        emails = add_subscribers(session, SUBSCRIBERS)
        for hours in (2, 3, 4):
            article(session, utcnow() - timedelta(hours=hours))
    worker = start_worker(rt.settings, concurrency=2)
    beats = [
        ChaparProcess(rt.settings, ["beat", "--schedule-file", str(tmp_path / f"beat{i}.db")],
                      ready_marker="beat: Starting", name=f"beat{i}").start()
        for i in range(2)
    ]
    try:
        smtp.wait_for(lambda messages: len(messages) >= SUBSCRIBERS, timeout=90)
        time.sleep(4)  # both beats keep ticking: give them the chance to do it twice
    finally:
        for process in (*beats, worker):
            process.stop()
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ScheduleSlot)) == 1
        issues = session.scalars(select(Issue)).all()
        assert len(issues) == 1 and issues[0].status is IssueStatus.SENT
    counts = smtp.counts()
    assert sorted(counts) == sorted(emails)
    assert set(counts.values()) == {1}, "somebody got the issue twice"
