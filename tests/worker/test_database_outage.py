"""Real processes: beat, its ops watcher, a worker's periodic tasks and heartbeat ride out a
PostgreSQL outage (no crash, no busy loop, one warning each) and carry on when it is back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from service.clock import utcnow
from service.ops import incidents, marks
from service.ops.models import Incident, Mark, WorkerSeen
from service.runtime import Runtime
from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.outage import database_closed
from tests.support.processes import ChaparProcess, start_worker

OUTAGE_SECONDS = 10
WARNING = "unreachable ("  # the tracker's one warning: "database at HOST:PORT unreachable (...)"


@pytest.fixture
def rt(redis_db: str, tmp_path: Path) -> Iterator[Runtime]:
    """A database of this test's own (it goes away for a while), ticks and heartbeats each second."""
    with postgres_database() as url:
        runtime = Runtime.from_settings(make_settings(
            tmp_path, database_url=url, broker_url=redis_db, beat_tick_seconds=1.0,
            ops_heartbeat_seconds=1.0))
        try:
            yield runtime
        finally:
            runtime.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen in {timeout}s: {what}")
        time.sleep(0.3)


def mark_after(rt: Runtime, name: str, moment: datetime) -> bool:
    with rt.sessions() as session:
        mark = session.get(Mark, name)
        return mark is not None and mark.last_at > moment


def heartbeat_after(rt: Runtime, moment: datetime) -> bool:
    with rt.sessions() as session:
        return any(seen > moment for seen in session.scalars(select(WorkerSeen.last_seen_at)))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lines_with(process: ChaparProcess, text: str, since: int = 0) -> list[str]:
    return [line for line in process.output[since:] if text in line]


def test_beat_and_workers_wait_out_a_database_outage_and_resume(rt: Runtime, tmp_path: Path) -> None:
    worker = start_worker(rt.settings, concurrency=1, name="worker")
    beat = ChaparProcess(rt.settings, ["beat", "--schedule-file", str(tmp_path / "beat.db")],
                         ready_marker="beat: Starting", name="beat").start()
    try:
        started = utcnow()
        wait_until(lambda: mark_after(rt, marks.SWEEPER, started), "the sweeper runs")
        wait_until(lambda: heartbeat_after(rt, started), "the heartbeat is written")
        seen = {p.name: len(p.output) for p in (worker, beat)}
        cpu = {p.name: cpu_seconds(p.pid) for p in (worker, beat)}

        with database_closed(rt.settings.effective_database_url):
            wait_until(lambda: bool(lines_with(beat, WARNING, seen["beat"])), "beat's warning")
            wait_until(lambda: len(lines_with(worker, WARNING, seen["worker"])) >= 2,
                       "the worker's warnings (heartbeat and tasks)")
            time.sleep(OUTAGE_SECONDS)  # ten ticks of every periodic job, all failing
            assert worker.alive() and beat.alive()
            during = {p.name: p.output[seen[p.name]:] for p in (worker, beat)}
            spent = {p.name: cpu_seconds(p.pid) - cpu[p.name] for p in (worker, beat)}
        back = utcnow()

        # One warning per process that met the outage (beat's watcher; the worker's heartbeat
        # in its main process and the tasks in its one pool process), not one per tick.
        assert len([line for line in during["beat"] if WARNING in line]) == 1, during["beat"]
        assert len([line for line in during["worker"] if WARNING in line]) == 2, during["worker"]
        for name, lines in during.items():
            assert not [line for line in lines if "Traceback" in line or "ERROR" in line], (
                name, lines)
        # Waiting, not spinning: a busy loop would have burnt most of the outage's seconds.
        assert spent["beat"] < OUTAGE_SECONDS / 4, spent
        assert spent["worker"] < OUTAGE_SECONDS / 4, spent

        # Back: the work resumes by itself, and beat's watcher writes the outage down.
        wait_until(lambda: mark_after(rt, marks.SWEEPER, back), "the sweeper runs again")
        wait_until(lambda: mark_after(rt, marks.BEAT_TICK, back), "the schedule ticks again")
        wait_until(lambda: heartbeat_after(rt, back), "the heartbeat is written again")

        def recorded() -> list[Incident]:
            with rt.sessions() as session:
                return list(session.scalars(select(Incident).where(
                    Incident.kind == incidents.DATABASE_UNREACHABLE)))

        wait_until(lambda: bool(recorded()), "the outage in the incident log")
        wait_until(lambda: bool(lines_with(worker, "reachable again")), "the worker says it is back")
        [incident] = recorded()
        assert started < incident.at < back
        assert incident.subject == f"127.0.0.1:{rt.engine.url.port}"
        assert "ثانیه" in incident.detail and "دوباره پاسخ داد" in incident.detail
        assert worker.alive() and beat.alive()
    finally:
        beat.stop()
        worker.stop()
