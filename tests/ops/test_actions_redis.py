"""Ops actions that need the broker or Redis: pausing a receiving domain, draining a worker."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from service.cli import main
from service.clock import utcnow
from service.delivery.models import Delivery
from service.ops.status import snapshot
from service.runtime import Runtime
from tests.conftest import emptied_runtime
from tests.ops.test_console import sending_issue
from tests.ops.test_lost_worker import purge
from tests.support.processes import settings_env, start_worker


def test_a_paused_domain_is_shown_and_resuming_makes_its_rows_due(
        postgresql_url: str, redis_db: str, tmp_path: Path) -> None:
    with emptied_runtime(tmp_path, database_url=postgresql_url, broker_url=redis_db) as rt:
        issue_id = sending_issue(rt)
        env = settings_env(rt.settings)
        result = CliRunner().invoke(main, ["ops", "pause-domain", "Slow.test"], env=env)
        assert result.exit_code == 0, result.output
        snap = snapshot(rt, utcnow())
        assert list(snap.paused_domains) == ["slow.test"]
        assert snap.paused_domains["slow.test"] > utcnow() + timedelta(days=6)
        assert snap.issue is not None and any("slow.test" in w for w in snap.issue.waiting)
        result = CliRunner().invoke(main, ["ops", "resume-domain", "slow.test"], env=env)
        assert result.exit_code == 0, result.output
        assert snapshot(rt, utcnow()).paused_domains == {}
        with rt.sessions() as db:
            due = db.scalars(select(Delivery.next_attempt_at).where(
                Delivery.issue_id == issue_id, Delivery.domain == "slow.test")).all()
        assert due and all(at is not None and at <= utcnow() for at in due)
        purge(rt)  # the doorbells the fan-out rang


def test_a_drained_worker_takes_no_new_work(postgresql_url: str, redis_db: str,
                                            tmp_path: Path) -> None:
    with emptied_runtime(tmp_path, database_url=postgresql_url, broker_url=redis_db,
                         ops_heartbeat_seconds=1.0) as rt:
        worker = start_worker(rt.settings, concurrency=1, name="drained")
        try:
            [name] = wait_alive(rt)
            result = CliRunner().invoke(main, ["ops", "drain", name], env=settings_env(rt.settings))
            assert result.exit_code == 0, result.output
            [seen] = snapshot(rt, utcnow()).workers
            assert seen.draining and seen.state == "alive"
            queues = rt.celery.control.inspect(timeout=2, destination=[name]).active_queues() or {}
            assert queues.get(name) == []  # consumes nothing any more
        finally:
            worker.stop()


def wait_alive(rt: Runtime, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = snapshot(rt, utcnow()).alive
        if alive:
            return alive
        time.sleep(0.5)
    raise AssertionError("no worker came alive")


