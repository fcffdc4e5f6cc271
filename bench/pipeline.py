"""The pieces of a benchmark run: a throwaway database and Redis DB, bulk subscribers,
the sample issue, worker processes and their memory."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from bench import REPO_ROOT
from service.settings import Settings
from tests.support.databases import postgres_database
from tests.support.processes import settings_env

POSTGRES_ADMIN_URL = os.environ.get(
    "CHAPAR_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CHAPAR_BENCH_REDIS", "redis://127.0.0.1:6379")
DOMAINS = 20  # readers spread over this many receiving domains
COPY_ROWS = 50_000


def throwaway_database(synchronous_commit: bool = True) -> AbstractContextManager[str]:
    """A migrated PostgreSQL database of its own for one run, dropped afterwards."""
    options = {} if synchronous_commit else {"synchronous_commit": "off"}
    return postgres_database(POSTGRES_ADMIN_URL, prefix="chapar_bench", options=options)


@contextmanager
def own_redis_db() -> Iterator[str]:
    """An empty Redis database number for this run; only that one is flushed, after."""
    numbers = list(range(1, 16))
    random.shuffle(numbers)
    for number in numbers:
        client = Redis.from_url(f"{REDIS_URL}/{number}")
        if client.dbsize() == 0:
            try:
                yield f"{REDIS_URL}/{number}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError("no empty Redis database number left for the benchmark")


def address(n: int) -> str:
    return f"reader{n}@news{n % DOMAINS}.example.test"


def load_subscribers(database_url: str, count: int, now: datetime) -> None:
    """`count` confirmed subscribers through COPY, in chunks of text rows."""
    engine = create_engine(database_url)
    stamp = now.isoformat()
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(
                "COPY subscribers (email, status, created_at, updated_at, confirmed_at, "
                "consent_source, consent_at, soft_bounces) FROM STDIN"
            ) as copy:
                for start in range(0, count, COPY_ROWS):
                    chunk = io.StringIO()
                    for n in range(start, min(count, start + COPY_ROWS)):
                        chunk.write(f"{address(n)}\tconfirmed\t{stamp}\t{stamp}\t{stamp}\t"
                                    f"bench\t{stamp}\t0\n")
                    copy.write(chunk.getvalue())
            raw.commit()
        finally:
            raw.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE subscribers"))
    finally:
        engine.dispose()


class Worker:
    """A `chapar worker` process group, started and waited for until Celery says ready."""

    def __init__(self, settings: Settings, name: str, concurrency: int) -> None:
        self.name = name
        self.output: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--concurrency", str(concurrency),
             "--queues", "send,mail,default", f"--hostname={name}-{os.getpid()}@%h",
             "--without-gossip", "--without-mingle"],
            env=settings_env(settings), cwd=REPO_ROOT, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} not ready:\n" + "".join(self.output[-40:]))

    def pids(self) -> list[int]:
        """The worker's main process and its pool children."""
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runnable_wait_seconds(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but not running (waiting for a
    CPU, including a virtual CPU's wake-up from halt); 0 when it is gone.

    /proc/<pid>/schedstat: time on a CPU, time waiting on a run queue, timeslices (ns).
    """
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu_seconds() -> float:
    """CPU used so far by every PostgreSQL process on the machine (this run's and others')."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def vacuums(connection: Connection) -> tuple[int, int]:
    """Autovacuum and autoanalyze runs on deliveries so far (after `row_updates` flushed them)."""
    found = connection.exec_driver_sql(
        "SELECT autovacuum_count, autoanalyze_count FROM pg_stat_user_tables"
        " WHERE relname = 'deliveries'").one()
    return int(found[0]), int(found[1])


def row_updates(connection: Connection) -> tuple[int, int]:
    """Row versions written to deliveries so far (all updates, and HOT ones)."""
    connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    time.sleep(1.0)
    connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    found = connection.exec_driver_sql(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"
    ).one()
    return int(found[0]), int(found[1])
