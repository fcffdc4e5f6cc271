"""Real processes: a worker killed during a send is lost on the console and in /metrics, the
ETA says why the send waits, and beat's watcher emails ops when no worker is left."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control
from service.ops.queues import QUEUES
from service.ops.status import Snapshot, snapshot
from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import emptied_runtime
from tests.delivery.factories import add_subscribers, make_issue
from tests.ops.test_console import check_metrics
from tests.staff.factories import staff_account
from tests.support.browser import serving
from tests.support.network import free_port
from tests.support.processes import ChaparProcess, start_worker
from tests.support.smtp import Received, SmtpRecorder
from tests.web.desk.support import desk_client, sign_in

OPS = "ops@site.test"
READERS = 400


@pytest.fixture
def slow_send(postgresql_url: str, redis_db: str, tmp_path: Path,
              smtp: SmtpRecorder) -> Iterator[Runtime]:
    """PostgreSQL, Redis, a send limited to 10 messages a second, quick heartbeats and ticks."""
    with emptied_runtime(tmp_path, database_url=postgresql_url, broker_url=redis_db,
                         smtp_url=smtp.url, send_rate_per_second=10.0, send_batch_size=50,
                         ops_emails=OPS, ops_heartbeat_seconds=1.0, ops_worker_lost_seconds=6.0,
                         ops_stall_minutes=0.1, beat_tick_seconds=2.0, lease_seconds=20) as rt:
        purge(rt)
        yield rt
        purge(rt)  # the doorbells nobody answered: later tests count the queues


def purge(rt: Runtime) -> None:
    with rt.celery.connection_for_write() as connection:
        for queue in QUEUES:
            with contextlib.suppress(Exception):  # never declared: nothing in it
                connection.default_channel.queue_purge(queue)


def wait_for(check: object, rt: Runtime, timeout: float = 60.0) -> Snapshot:
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot(rt, utcnow())
        if check(snap):  # type: ignore[operator]
            return snap
        if time.monotonic() > deadline:
            raise AssertionError("not seen in time:\n" + "\n".join(snap.problems))
        time.sleep(1)


def metric(body: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    assert found, f"{name} missing"
    return float(found.group(1))


def test_a_killed_worker_is_lost_the_eta_says_so_and_ops_are_emailed(
        slow_send: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    rt = slow_send
    with unit_of_work(rt.sessions) as db:
        add_subscribers(db, READERS)
        issue_id = make_issue(db, number=5).id
        staff_account(db, "ops@example.com", "ops")
    port = free_port()
    worker = start_worker(rt.settings, concurrency=2, name="doomed")
    beat: ChaparProcess | None = None
    try:
        with serving(create_app(rt), port):
            control.start_and_ring(rt, issue_id, utcnow())
            smtp.wait_for(lambda messages: len(messages) >= 20, timeout=60)
            # A live scrape during the send: the worker is alive and mail is counted.
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            check_metrics(body)
            assert metric(body, "chapar_workers_alive") == 1
            assert metric(body, "chapar_messages_sent_total") >= 1
            assert metric(body, "chapar_issue_sending") == 1

            worker.kill()
            lost = wait_for(lambda s: any(w.state == "lost" for w in s.workers), rt)
            assert lost.alive == []
            assert lost.issue is not None and "هیچ کارگری زنده نیست" in lost.issue.waiting
            assert lost.issue.eta_seconds is None  # no ETA while nobody sends
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            assert metric(body, "chapar_workers_alive") == 0
            assert metric(body, "chapar_workers_lost") == 1
            client = desk_client(rt)
            assert sign_in(client, "ops@example.com").status_code == 303
            page = client.get("/desk/ops/live").text
            assert "از دست رفته" in page and "هیچ کارگری زنده نیست" in page

            beat = ChaparProcess(rt.settings, ["beat", "--schedule-file", str(tmp_path / "beat.db")],
                                 ready_marker="beat: Starting", name="beat").start()
            def alerts_text(messages: list[Received]) -> str:
                return "\n".join(m.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                                 for m in messages if OPS in m.rcpt_tos)

            # One email or two, as the watcher finds the conditions (a busy machine may see
            # the stall a pass later): both must reach ops.
            smtp.wait_for(lambda messages: "هیچ کارگری زنده نیست" in alerts_text(messages)
                          and "گیر کرده" in alerts_text(messages), timeout=90)
            assert len(smtp.to(OPS)) <= 2  # at most once per condition
            from service.ops import incidents

            # The watcher records the alert it sent once the SMTP server has taken it.
            wanted, kinds = {incidents.WORKER_LOST, incidents.ALERT_SENT}, set()
            deadline = time.monotonic() + 30
            while not wanted <= kinds and time.monotonic() < deadline:
                with rt.sessions() as db:
                    kinds = {i.kind for i in incidents.recent(db)}
                time.sleep(0.2)
            assert wanted <= kinds
    finally:
        if beat is not None:
            beat.stop()
        worker.stop()
