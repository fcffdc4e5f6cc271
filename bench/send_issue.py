"""Send one issue end to end at full speed and compare with the raw limit, in one run.

PostgreSQL, Redis and real `chapar worker` processes send the sample digest to N
confirmed subscribers into Postfix's smtp-sink on 127.0.0.1. Then, into the same
sink, the raw pipelining sender (bench/raw_sender.py) sends the same message bytes.
Prints fan-out time, messages per second, peak memory per worker, and our rate as a
fraction of the raw one. Everything it creates is thrown away afterwards.

    .venv/bin/python -m bench.send_issue --subscribers 100000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bench import REPO_ROOT
from bench.pipeline import (
    Worker,
    cpu_seconds,
    load_subscribers,
    own_redis_db,
    peak_rss_mib,
    postgres_cpu_seconds,
    throwaway_database,
)
from bench.raw_sender import measure
from bench.sink import SmtpSink
from service.articles.ingest import parse_feed, upsert_articles
from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.control import start_and_ring
from service.delivery.message import Recipient
from service.delivery.models import Delivery
from service.delivery.sender import DeliveryAgent
from service.digests.build import build_issue
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime
from service.settings import Settings

SAMPLE_FEED = REPO_ROOT / "service" / "articles" / "sample" / "feed.xml"


def build_sample_issue(rt: Runtime, now: datetime) -> int:
    """The sample feed's articles, built into one draft issue (rendered and inlined once)."""
    articles = parse_feed(SAMPLE_FEED.read_bytes(), "https://news.example.test/feed")
    with unit_of_work(rt.sessions) as session:
        upsert_articles(session, articles, now)
        # The sample articles carry fixed dates: let the issue reach back to them, however old.
        settings = rt.settings.model_copy(update={"digest_max_lookback_days": 36500})
        result = build_issue(session, settings, now)
        if result.issue is None:
            raise RuntimeError(f"no issue built: {result.reason}")
        return result.issue.id


def message_bytes(rt: Runtime, issue_id: int, now: datetime) -> bytes:
    """One recipient's complete message, exactly as our sender builds it."""
    message = DeliveryAgent(rt).message_for(issue_id)
    assert message is not None
    return message.render(Recipient(1, 1, "reader0@news0.example.test", "news0.example.test"), now)


def issue_state(rt: Runtime, issue_id: int) -> tuple[IssueStatus, dict[str, int]]:
    with rt.sessions() as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        return issue.status, ledger.counts(session, issue_id)


def issue_finished(rt: Runtime, issue_id: int) -> bool:
    with rt.sessions() as session:
        return session.scalar(select(Issue.status).where(Issue.id == issue_id)) is IssueStatus.SENT


def sent_span(rt: Runtime, issue_id: int) -> float:
    """Seconds from the first to the last `sent` stamp in the ledger."""
    with rt.sessions() as session:
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at))
            .where(Delivery.issue_id == issue_id)).one()
    return (last - first).total_seconds() if first and last else 0.0


def start_profiler(pid: int, folder: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling one pool process into folder/worker-<pid>.txt (collapsed stacks)."""
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--rate", "200",
                             "--format", "raw", "--nonblocking", "--idle",
                             "--output", str(folder / f"worker-{pid}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(subscribers: int, workers: int, concurrency: int, raw_messages: int,
        batch_size: int, profile: Path | None = None, synchronous_commit: bool = True) -> None:
    now = datetime.now(UTC)
    with throwaway_database(synchronous_commit) as database_url, own_redis_db() as redis_url, \
            SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="chapar-bench-") as folder:
        settings = Settings(
            environment="development", data_dir=Path(folder), database_url=database_url,
            broker_url=redis_url, smtp_url=sink.url, secret_key=os.urandom(24).hex(),
            public_url="https://news.example.test/newsletter",
            from_address="newsletter@news.example.test", send_batch_size=batch_size,
        )
        rt = Runtime.from_settings(settings)
        started = time.perf_counter()
        load_subscribers(database_url, subscribers, now)
        print(f"loaded {subscribers:,} confirmed subscribers with COPY in "
              f"{time.perf_counter() - started:.1f} s")
        issue_id = build_sample_issue(rt, now)
        message = message_bytes(rt, issue_id, now)
        print(f"issue built; one message is {len(message):,} bytes")

        pool = [Worker(settings, f"bench{i}", concurrency) for i in range(workers)]
        try:
            for worker in pool:
                worker.wait_ready()
            pids = {w.name: w.pids() for w in pool}
            baseline = {w.name: [peak_rss_mib(p) for p in pids[w.name]] for w in pool}
            profilers = [start_profiler(pid, profile) for w in pool
                         for pid in pids[w.name][1:]] if profile else []

            cpu_before = {pid: cpu_seconds(pid) for w in pool for pid in pids[w.name]}
            cpu_before[sink.pid] = cpu_seconds(sink.pid)
            pg_before = postgres_cpu_seconds()
            t0 = time.perf_counter()
            rows = start_and_ring(rt, issue_id, datetime.now(UTC))
            t1 = time.perf_counter()
            print(f"fan-out: {rows:,} ledger rows written and rung in {t1 - t0:.2f} s")

            last_report = t1
            timeout = 120 + subscribers / 100
            # Watch the issue row only: counting the ledger often would cost the
            # database as much CPU as a worker.
            while not issue_finished(rt, issue_id):
                if time.perf_counter() - t1 > timeout:
                    raise RuntimeError(f"not finished after {timeout:.0f} s: "
                                       f"{issue_state(rt, issue_id)[1]}")
                if time.perf_counter() - last_report >= 15:
                    last_report = time.perf_counter()
                    print(f"  ... {sink.received:,} received by the sink, "
                          f"{sink.received / (last_report - t1):,.0f}/s")
                time.sleep(0.2)
            t2 = time.perf_counter()
            cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
            pg_cpu = postgres_cpu_seconds() - pg_before
            peaks = {w.name: [peak_rss_mib(p) for p in pids[w.name]] for w in pool}
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        finally:
            for worker in pool:
                worker.stop()

        received = sink.wait_for(subscribers)
        span = sent_span(rt, issue_id)
        _, counts = issue_state(rt, issue_id)
        send_rate = subscribers / (t2 - t1)
        end_to_end = subscribers / (t2 - t0)

        raw_n = raw_messages or min(subscribers, 100_000)
        raw = measure("127.0.0.1", sink.port, message, raw_n, workers * concurrency)
        raw_received = sink.wait_for(subscribers + raw_n) - received
        rt.close()

    print()
    print(f"subscribers            {subscribers:,}")
    print(f"workers                {workers} x concurrency {concurrency}, batch {batch_size}"
          + ("" if synchronous_commit else ", synchronous_commit off (diagnosis)"))
    print(f"ledger                 {counts}")
    print(f"sink received          {received:,} (ours), {raw_received:,} (raw)")
    print(f"fan-out                {t1 - t0:.2f} s")
    print(f"send (ring->finished)  {t2 - t1:.2f} s = {send_rate:,.0f} messages/s "
          f"(first->last sent_at {span:.2f} s)")
    print(f"end to end             {t2 - t0:.2f} s = {end_to_end:,.0f} messages/s")
    for name in peaks:
        now_mib = ", ".join(f"{m:.0f}" for m in peaks[name])
        was_mib = ", ".join(f"{m:.0f}" for m in baseline[name])
        print(f"peak RSS {name:14s}{now_mib} MiB (main, pool children; {was_mib} when ready)")
    wall = t2 - t0
    for name in peaks:
        shares = ", ".join(f"{cpu[p] / wall:.0%}" for p in pids[name])
        print(f"CPU {name:19s}{shares} of one core (main, pool children)")
    print(f"CPU smtp-sink          {cpu[sink.pid] / wall:.0%} of one core")
    print(f"CPU PostgreSQL         {pg_cpu / wall:.0%} of one core (every backend on the machine)")
    print(f"load average           {os.getloadavg()[0]:.1f} (2 cores, shared with other work)")
    print(f"raw pipelining sender  {raw.messages:,} in {raw.seconds:.2f} s = "
          f"{raw.per_second:,.0f} messages/s ({raw.processes} processes)")
    print(f"ours / raw             {end_to_end / raw.per_second:.0%} end to end, "
          f"{send_rate / raw.per_second:.0%} sending only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pool processes per worker (2 measured fastest on 2 cores)")
    parser.add_argument("--raw-messages", type=int, default=0,
                        help="messages for the raw sender (default: N, at most 100,000)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--profile", type=Path,
                        help="sample each pool process with py-spy into this folder")
    parser.add_argument("--no-synchronous-commit", action="store_true",
                        help="diagnosis: commits do not wait for the WAL flush")
    args = parser.parse_args()
    run(args.subscribers, args.workers, args.concurrency, args.raw_messages, args.batch_size,
        args.profile, not args.no_synchronous_commit)


if __name__ == "__main__":
    main()
