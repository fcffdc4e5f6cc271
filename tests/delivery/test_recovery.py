"""A worker SIGKILLed mid-send, with the default short lease: its rows go out again soon.

Real processes: PostgreSQL, a private Redis, beat (whose lease recovery takes the rows
back), two workers. The killed worker's pool processes held a claim and at most one
chunk `sending` each; those rows must be claimed again within 30 s of the kill, and
nobody gets a second copy except for rows the ledger records as uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control, ledger
from service.delivery.models import Delivery, DeliveryClaim, DeliveryStatus
from service.delivery.sender import CHUNK
from service.digests.models import Issue, IssueStatus
from service.ops.status import render_text, snapshot
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_chaos import assert_ledger_matches_server
from tests.support.processes import ChaparProcess, start_worker
from tests.support.redis_server import PrivateRedis
from tests.support.smtp import SmtpRecorder

pytestmark = pytest.mark.chaos

RECOVERY_TARGET_SECONDS = 30.0
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


@pytest.fixture
def lease_runtime(postgresql_url: str, private_redis: PrivateRedis, smtp: SmtpRecorder,
                  tmp_path: Path) -> Iterator[Runtime]:
    """The default lease and lease check (no override): what production runs with."""
    settings = make_settings(
        tmp_path, database_url=postgresql_url, broker_url=private_redis.url,
        redis_url=private_redis.url, smtp_url=smtp.url, retry_base_seconds=0.5,
        send_batch_size=200,
    )
    assert settings.lease_seconds == 20 and settings.lease_check_seconds == 5
    rt = Runtime.from_settings(settings)
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def start_beat(settings: Settings, folder: Path) -> ChaparProcess:
    return ChaparProcess(settings, ["beat", "--schedule-file", str(folder / "beat.db")],
                         ready_marker="beat: Starting", name="beat").start()


def begin(rt: Runtime, subscribers: int) -> tuple[int, list[str]]:
    with unit_of_work(rt.sessions) as session:
        emails = add_subscribers(session, subscribers)
        issue_id = make_issue(session).id
    assert control.start_and_ring(rt, issue_id, utcnow()) == subscribers
    return issue_id, emails


def wait_until_sent(rt: Runtime, issue_id: int, timeout: float) -> float:
    """Waits (without sweeping: beat does that) until the issue is finished; the seconds it took."""
    began = time.monotonic()
    while True:
        with rt.sessions() as session:
            if session.scalar(select(Issue.status).where(Issue.id == issue_id)) is IssueStatus.SENT:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError(f"issue not finished: {ledger.counts(session, issue_id)}")
        time.sleep(0.25)


def pool_pids(process: ChaparProcess) -> set[int]:
    """The pool processes Celery forked from a worker's main process."""
    path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    return {int(pid) for pid in path.read_text().split()}


def claimant_pid(worker: str | None) -> int | None:
    """The pool process in a claimant name (host:pid:nonce)."""
    parts = (worker or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def held_by(rt: Runtime, pids: set[int]) -> dict[int, DeliveryStatus]:
    """Rows these processes hold now (claimed or sending, with a lease), by id."""
    with rt.sessions() as session:
        rows = session.execute(
            select(Delivery.id, Delivery.worker, Delivery.status)
            .join(DeliveryClaim, DeliveryClaim.worker == Delivery.worker)
            .where(Delivery.status.in_(PENDING))
        ).all()
    return {i: status for i, worker, status in rows if claimant_pid(worker) in pids}


def still_held(rt: Runtime, ids: list[int], pids: set[int]) -> int:
    """How many of these rows are still pending under a claim of these processes."""
    with rt.sessions() as session:
        rows = session.execute(
            select(Delivery.worker).where(Delivery.id.in_(ids), Delivery.status.in_(PENDING))
        ).scalars().all()
    return sum(1 for worker in rows if claimant_pid(worker) in pids)


def test_a_killed_workers_rows_are_sending_again_within_30_seconds(
        lease_runtime: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    rt = lease_runtime
    beat = start_beat(rt.settings, tmp_path)
    doomed = start_worker(rt.settings, concurrency=2, name="doomed")
    survivor = start_worker(rt.settings, concurrency=1, name="survivor")
    try:
        doomed_pids = pool_pids(doomed)
        assert len(doomed_pids) == 2
        issue_id, emails = begin(rt, 2500)
        smtp.wait_for(lambda m: len(m) >= 300, timeout=60)
        deadline = time.monotonic() + 30
        while not held_by(rt, doomed_pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        doomed.kill()
        killed_at = time.monotonic()
        held = held_by(rt, doomed_pids)  # nothing changes them now until their lease ends
        sending = sum(1 for s in held.values() if s is DeliveryStatus.SENDING)
        print(f"SIGKILL after {len(smtp.messages)} messages: the killed worker held {len(held)} "
              f"rows, {sending} of them sending")
        assert held, "the killed worker held nothing: it was not killed mid-send"
        assert sending <= CHUNK * len(doomed_pids)

        ids = list(held)
        while still_held(rt, ids, doomed_pids):
            assert time.monotonic() - killed_at <= RECOVERY_TARGET_SECONDS, (
                f"{still_held(rt, ids, doomed_pids)} rows still held by the killed worker")
            time.sleep(0.2)
        recovered_after = time.monotonic() - killed_at
        print(f"every row of the killed worker claimed again {recovered_after:.1f} s after the kill")

        wait_until_sent(rt, issue_id, timeout=90)
        status = render_text(snapshot(rt, utcnow()))
        print(status)
        assert "recovered at" in status and "lease ran out" in status
        assert survivor.alive() and beat.alive()
    finally:
        survivor.stop()
        beat.stop()
    assert_ledger_matches_server(rt, issue_id, smtp, emails)
    with rt.sessions() as session:
        counts = ledger.counts(session, issue_id)
    # Only the chunk each killed pool process had on the wire can be uncertain.
    assert counts["possible_duplicates"] <= CHUNK * len(doomed_pids)
    assert counts["possible_duplicates"] <= sending
