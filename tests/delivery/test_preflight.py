"""Sending that cannot work is refused before it starts, and shown by `chapar status` while it fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery.models import Delivery, DeliveryStatus
from service.delivery.sender import DeliveryAgent
from service.digests.models import IssueStatus, ScheduleSlot
from service.digests.schedule import run_tick
from service.ops.status import render_text, snapshot
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_sender import issue_status, rows, start
from tests.digests.test_schedule import FRIDAY_0800_TEHRAN, fake_builder
from tests.subscribers.test_emails import dkim_key
from tests.support.processes import settings_env
from tests.support.smtp import SmtpRecorder
from tests.support.tls import make_ca

MISSING_KEY = Path("/nonexistent/dkim/chapar.pem")


@pytest.fixture
def embedded(sqlite_url: str, tmp_path: Path, smtp: SmtpRecorder) -> Iterator[Runtime]:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, smtp_url=smtp.url))
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def again(rt: Runtime, **overrides: Any) -> Runtime:
    """The same database with other settings (a fresh Settings: smtp is cached per object)."""
    values = rt.settings.model_dump() | overrides
    return Runtime(settings=Settings(**values), engine=rt.engine, sessions=rt.sessions,
                   tokens=rt.tokens)


def chapar(rt: Runtime, *args: str) -> Any:
    from service.cli import main

    return CliRunner().invoke(main, list(args), env=settings_env(rt.settings))


def draft(rt: Runtime, subscribers: int = 3) -> None:
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, subscribers)
        make_issue(session, number=7)


def deliveries(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def test_a_missing_dkim_key_refuses_the_send_and_status_says_why(embedded: Runtime) -> None:
    rt = again(embedded, dkim_selector="s1", dkim_private_key_path=MISSING_KEY)
    draft(rt)
    result = chapar(rt, "digest", "send", "7")
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "ارسال آغاز نشد: کلید DKIM قابل استفاده نیست" in line
    assert "send refused: DKIM key unreadable" in line and str(MISSING_KEY) in line
    assert deliveries(rt) == 0  # the issue was not moved to sending
    status = chapar(rt, "status", "--once")
    assert "issue: none sent yet" in status.output
    assert "problem: sending is failing since" in status.output
    assert "Tehran time): DKIM key unreadable" in status.output


def test_a_relay_certificate_that_fails_refuses_the_send(embedded: Runtime, tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    relay = SmtpRecorder(tls=ca.server_context()).start()
    try:
        rt = again(embedded, smtp_url=relay.url)
        draft(rt)
        result = chapar(rt, "digest", "send", "7")
        assert result.exit_code == 1
        assert "اتصال امن (TLS) با سرور SMTP برقرار نشد" in result.output
        assert "TLS certificate verify failed" in result.output
        assert deliveries(rt) == 0
        # Trusting the relay's CA (and its name) lets the same command start the send.
        rt = again(rt, smtp_ca_file=ca.ca_file, smtp_tls_server_name="mail.chapar.test")
        result = chapar(rt, "digest", "send", "7")
        assert result.exit_code == 0, result.output
        assert deliveries(rt) == 3
    finally:
        relay.stop()


def test_a_key_lost_during_a_send_is_shown_until_a_message_goes_out(
        runtime: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    issue_id, _ = start(runtime, 3)
    broken = DeliveryAgent(again(runtime, dkim_selector="s1", dkim_private_key_path=MISSING_KEY))
    broken.deliver(issue_id)  # no exception: the task returns, the rows wait
    assert smtp.messages == []
    assert {r.status for r in rows(runtime, issue_id).values()} == {DeliveryStatus.QUEUED}
    text = render_text(snapshot(runtime, utcnow()))
    assert "problem: sending is failing since" in text and "DKIM key unreadable" in text

    key, _record = dkim_key(tmp_path)
    DeliveryAgent(again(runtime, dkim_selector="s1", dkim_private_key_path=key)).deliver(issue_id)
    assert issue_status(runtime, issue_id) is IssueStatus.SENT
    assert "sending is failing" not in render_text(snapshot(runtime, utcnow()))


def test_a_relay_that_fails_tls_during_a_send_is_shown_with_its_reason(
        runtime: Runtime, tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    relay = SmtpRecorder(tls=ca.server_context(), implicit=True).start()
    try:
        issue_id, _ = start(runtime, 2)
        DeliveryAgent(again(runtime, smtp_url=relay.url)).deliver(issue_id)
        assert {r.status for r in rows(runtime, issue_id).values()} == {DeliveryStatus.DEFERRED}
        [problem] = [p for p in snapshot(runtime, utcnow()).problems if "sending" in p]
        assert problem.startswith("sending is failing since ")
        assert "TLS certificate verify failed" in problem
    finally:
        relay.stop()


def test_the_automatic_send_is_refused_too_and_leaves_a_draft(embedded: Runtime) -> None:
    rt = again(embedded, digest_auto_send=True, dkim_selector="s1",
               dkim_private_key_path=MISSING_KEY)
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 2)
    result = run_tick(rt, FRIDAY_0800_TEHRAN + timedelta(seconds=20), fake_builder([]), lambda s, i: [])
    assert result.issue_id is not None and result.rows == 0
    assert issue_status(rt, result.issue_id) is IssueStatus.DRAFT
    with rt.sessions() as session:
        slot = session.scalars(select(ScheduleSlot)).one()
    assert slot.outcome == "refused" and "DKIM key unreadable" in (slot.reason or "")
    assert "DKIM key unreadable" in render_text(snapshot(rt, utcnow()))
