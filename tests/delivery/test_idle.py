"""SMTP sessions end with QUIT: after the idle time, and when a worker process stops."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control, ledger
from service.delivery.sender import DeliveryAgent
from service.digests.models import IssueStatus
from service.runtime import Runtime
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_sender import issue_status, start, with_settings
from tests.support.processes import start_worker
from tests.support.smtp import SmtpRecorder

IDLE_HELO = "idle-test.chapar.test"
STOPPING_HELO = "stopping-worker.chapar.test"


def wait_for_quits(smtp: SmtpRecorder, count: int, helo: str = IDLE_HELO, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while smtp.quits_by_helo[helo] < count:
        seen = smtp.quits_by_helo[helo]
        assert time.monotonic() < deadline, f"the server saw {seen} QUIT from {helo}, expected {count}"
        time.sleep(0.05)


def test_an_idle_connection_is_closed_with_quit_and_reopened_when_needed(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    agent = DeliveryAgent(with_settings(runtime, smtp_idle_seconds=0.3, smtp_helo=IDLE_HELO))
    first, _ = start(runtime, 3)
    agent.deliver(first)
    assert smtp.counts().total() == 3
    wait_for_quits(smtp, 1)  # nothing more to send: the worker says goodbye
    # The server counts the QUIT before the client has read its 221 and let the socket go.
    deadline = time.monotonic() + 10
    while agent.connection.is_open():
        assert time.monotonic() < deadline, "the connection stayed open after its QUIT"
        time.sleep(0.05)
    with unit_of_work(runtime.sessions) as session:
        second = make_issue(session, number=2).id
        ledger.start_send(session, second, utcnow(), timedelta(hours=1))
    agent.deliver(second)  # a new session for the next send
    assert smtp.counts().total() == 6
    wait_for_quits(smtp, 2)


def test_a_stopping_worker_says_quit(postgresql_url: str, redis_db: str, tmp_path: Path,
                                     smtp: SmtpRecorder) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=postgresql_url,
                                             broker_url=redis_db, smtp_url=smtp.url,
                                             smtp_helo=STOPPING_HELO))
    truncate_all(rt)
    worker = start_worker(rt.settings, concurrency=1, queues="send")
    try:
        with unit_of_work(rt.sessions) as session:
            add_subscribers(session, 5)
            issue_id = make_issue(session).id
        control.start_and_ring(rt, issue_id, utcnow())
        deadline = time.monotonic() + 60
        while issue_status(rt, issue_id) is not IssueStatus.SENT:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
        # Idle for less than 30 s: the session is kept for the next send.
        assert smtp.quits_by_helo[STOPPING_HELO] == 0
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()
    wait_for_quits(smtp, 1, helo=STOPPING_HELO, timeout=5)
