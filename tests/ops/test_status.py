"""`chapar status`: queue depths, live workers and the issue's counts, from real brokers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control
from service.ops.queues import filesystem_depths
from service.ops.status import render_text, snapshot
from service.runtime import Runtime
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.support.processes import settings_env, start_worker


def test_filesystem_queue_depth_counts_kombu_message_files(tmp_path: Path) -> None:
    for name in ("1_a.send.msg", "2_b.send.msg", "3_c.mail.msg", "4_d.default.msg", "junk.txt"):
        (tmp_path / name).write_text("{}")
    assert filesystem_depths(tmp_path) == {"mail": 1, "send": 2, "default": 1}


def test_status_of_a_send_waiting_for_workers_on_the_embedded_defaults(
        sqlite_url: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, send_batch_size=2))
    truncate_all(rt)
    try:
        with unit_of_work(rt.sessions) as session:
            add_subscribers(session, 5)
            issue_id = make_issue(session, number=4).id
        control.start_and_ring(rt, issue_id, utcnow())
        snap = snapshot(rt, utcnow())
        assert snap.queues["send"] == 3  # ceil(5 / 2) doorbells, nobody answered yet
        assert snap.issue is not None and snap.issue.counts["queued"] == 5
        text = render_text(snap)
        assert "issue 4 (sending)" in text and "pending 5" in text and "sent 0" in text
        assert "next scheduled issue: جمعه" in text

        result = CliRunner().invoke(_main(), ["status"], env=settings_env(rt.settings))
        assert result.exit_code == 0, result.output
        assert "issue 4 (sending)" in result.output
    finally:
        truncate_all(rt)
        rt.close()


def test_status_on_redis_sees_queue_depth_and_live_workers(
        postgresql_url: str, redis_db: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=postgresql_url,
                                             broker_url=redis_db))
    rt.celery.control.purge()
    rt.ring("chapar.send_batch", 999)
    assert snapshot(rt, utcnow()).queues["send"] == 1
    assert snapshot(rt, utcnow()).alive == []
    worker = start_worker(rt.settings, concurrency=1, name="status")
    try:
        snap = snapshot(rt, utcnow())
        assert len(snap.alive) == 1
        assert snap.alive[0].startswith("status-")
        [seen] = snap.workers
        assert seen.host and seen.pool == 1 and seen.last_seen_at is not None  # its heartbeat
        assert "workers alive: 1" in render_text(snap)
    finally:
        worker.stop()
        rt.close()


def _main() -> Any:
    from service.cli import main

    return main
