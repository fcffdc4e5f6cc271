"""A real `chapar beat` and worker at the weekly slot: the approved issue goes out, an
issue nobody approved is held and the editors are told by email."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import review
from service.digests.build import build_issue
from service.digests.models import IssueStatus
from service.runtime import Runtime
from service.staff.permissions import COMMAND_LINE
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers
from tests.digests.factories import article
from tests.staff.factories import staff_account
from tests.support.processes import ChaparProcess, start_worker
from tests.support.redis_server import PrivateRedis
from tests.support.smtp import SmtpRecorder

SUBSCRIBERS = 12
EDITOR = "editor@example.com"


@pytest.fixture
def slot_now(postgresql_url: str, private_redis: PrivateRedis, smtp: SmtpRecorder,
             tmp_path: Path) -> Iterator[Runtime]:
    """Settings whose weekly slot is this very minute in Tehran; nothing is sent unattended."""
    local = utcnow().astimezone(make_settings(tmp_path).tz)
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=postgresql_url, broker_url=private_redis.url,
        redis_url=private_redis.url, smtp_url=smtp.url, digest_auto_send=False,
        digest_weekday=local.weekday(), digest_hour=local.hour, digest_minute=local.minute,
        beat_tick_seconds=1))
    truncate_all(rt)
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, SUBSCRIBERS)
        staff_account(session, EDITOR, "editor")
        for hours in (2, 3):
            article(session, utcnow() - timedelta(hours=hours))
        assert build_issue(session, rt.settings, utcnow()).issue is not None
    yield rt
    truncate_all(rt)
    rt.close()


def run_beat_until(rt: Runtime, tmp_path: Path, smtp: SmtpRecorder, messages: int) -> None:
    worker = start_worker(rt.settings, concurrency=2)
    beat = ChaparProcess(rt.settings, ["beat", "--schedule-file", str(tmp_path / "beat.db")],
                         ready_marker="beat: Starting", name="beat").start()
    try:
        smtp.wait_for(lambda received: len(received) >= messages, timeout=90)
    finally:
        beat.stop()
        worker.stop()


def issue_status(rt: Runtime) -> IssueStatus:
    with rt.sessions() as session:
        return review.find(session, 1).status


@pytest.mark.chaos
def test_beat_sends_the_approved_issue_at_its_slot(slot_now: Runtime, smtp: SmtpRecorder,
                                                   tmp_path: Path) -> None:
    rt = slot_now
    with unit_of_work(rt.sessions) as session:
        issue = review.find(session, 1)
        review.request_review(session, issue, COMMAND_LINE, utcnow(), review.pre_send_checks(rt))
        review.approve(session, issue, COMMAND_LINE, utcnow())
    run_beat_until(rt, tmp_path, smtp, SUBSCRIBERS)
    assert set(smtp.counts().values()) == {1} and len(smtp.counts()) == SUBSCRIBERS
    assert smtp.to(EDITOR) == []  # nothing was held
    with rt.sessions() as session:
        assert review.find(session, 1).send_started_at is not None


@pytest.mark.chaos
def test_beat_holds_an_issue_nobody_approved_and_tells_the_editors(
        slot_now: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    rt = slot_now
    run_beat_until(rt, tmp_path, smtp, 1)
    [held] = smtp.messages
    assert held.rcpt_tos == [EDITOR]
    assert "فرستاده نشد" in str(held.message["Subject"])
    assert issue_status(rt) is IssueStatus.DRAFT  # held, never sent
