"""Send one issue end to end at full speed and compare with the raw limit, in one run.

PostgreSQL, Redis and real `chapar worker` processes send the sample digest to N
confirmed subscribers into Postfix's smtp-sink on 127.0.0.1; with --dkim, a second
time DKIM-signed with a freshly generated RSA-2048 key (its own database and
workers), so signing's cost is measured in the same run. Before and after, into the
same sink, the raw pipelining sender (bench/raw_sender.py) sends the same (unsigned)
message bytes, and our rate is compared with the mean of its two.
Prints fan-out time, messages per second, peak memory per worker, and our rate as a
fraction of the raw one. Everything it creates is thrown away afterwards.

    .venv/bin/python -m bench.send_issue --subscribers 100000 [--dkim [rsa|ed25519]]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import func, select

from bench import REPO_ROOT
from bench.pipeline import (
    Worker,
    cpu_seconds,
    load_subscribers,
    own_redis_db,
    peak_rss_mib,
    postgres_cpu_seconds,
    row_updates,
    runnable_wait_seconds,
    throwaway_database,
    vacuums,
)
from bench.raw_sender import RawFigures, measure
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



@contextmanager
def loaded_issue(subscribers: int, now: datetime) -> Iterator[tuple[Runtime, int]]:
    """`subscribers` confirmed readers and the sample issue built, not sent, in a database
    and a Redis database of their own, with a Runtime on them that mails nowhere; all
    thrown away after. For the scripts that measure the ledger without sending."""
    with tempfile.TemporaryDirectory() as folder, throwaway_database() as database_url, \
            own_redis_db() as redis_url:
        settings = Settings(
            environment="development", data_dir=Path(folder), database_url=database_url,
            broker_url=redis_url, smtp_url="smtp://127.0.0.1:1", secret_key=os.urandom(24).hex(),
            public_url="https://news.example.test/newsletter",
            from_address="newsletter@news.example.test",
        )
        rt = Runtime.from_settings(settings)
        try:
            load_subscribers(database_url, subscribers, now)
            yield rt, build_sample_issue(rt, now)
        finally:
            rt.close()

def message_bytes(rt: Runtime, issue_id: int, now: datetime) -> bytes:
    """One recipient's complete message, exactly as our sender builds it."""
    agent = DeliveryAgent(rt)
    assert agent.load_dkim()  # signed when DKIM is configured, as the workers sign
    message = agent.message_for(issue_id)
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
    """py-spy sampling one pool process into folder/worker-<pid>.txt (collapsed stacks).

    With CHAPAR_BENCH_PROFILE_CPU=1 only samples where the process holds the GIL are
    kept (where its Python code's CPU goes: py-spy's own idle test counted the wait in
    `select` as busy); by default waiting is sampled too (where its time goes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    idle = ["--gil"] if os.environ.get("CHAPAR_BENCH_PROFILE_CPU") == "1" else ["--idle"]
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--rate", "200",
                             "--format", "raw", "--nonblocking", *idle,
                             "--output", str(folder / f"worker-{pid}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class PassFigures:
    """One send of the issue to every subscriber, as measured."""

    label: str
    message_size: int
    message: bytes
    counts: dict[str, int]
    received: int
    fan_out: float
    send_seconds: float
    wall: float
    span: float
    peaks: dict[str, list[float]]
    baseline: dict[str, list[float]]
    cpu_shares: dict[str, list[float]]
    sink_cpu: float
    pg_cpu: float
    load: float
    sink_wait: float  # share of the wall time the sink waited for a CPU while runnable
    pool_wait: list[float]  # the same, for each pool child's sending thread
    row_versions: int  # ledger row versions the send wrote (UPDATEs of deliveries)
    hot_versions: int  # of those, heap-only (no index entry written)
    vacuums: tuple[int, int]  # autovacuum and autoanalyze runs on the ledger, fan-out to the end


def dkim_key(folder: Path, kind: str = "rsa") -> Path:
    """A fresh RSA-2048 or Ed25519 private key (PEM), as an operator would configure for DKIM."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate())
    path = folder / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def send_pass(label: str, sink: SmtpSink, folder: Path, subscribers: int, workers: int,
              concurrency: int, batch_size: int, already_received: int,
              dkim: Path | None = None, profile: Path | None = None,
              synchronous_commit: bool = True, connections: int = 2,
              autovacuum: bool = True) -> PassFigures:
    """Load the subscribers into a database of its own and send them the issue once."""
    now = datetime.now(UTC)
    with throwaway_database(synchronous_commit) as database_url, own_redis_db() as redis_url:
        settings = Settings(
            environment="development", data_dir=folder, database_url=database_url,
            broker_url=redis_url, smtp_url=sink.url, secret_key=os.urandom(24).hex(),
            public_url="https://news.example.test/newsletter",
            from_address="newsletter@news.example.test", send_batch_size=batch_size,
            dkim_selector="bench" if dkim else "", dkim_private_key_path=dkim,
            smtp_connections=connections,
        )
        rt = Runtime.from_settings(settings)
        started = time.perf_counter()
        load_subscribers(database_url, subscribers, now)
        print(f"[{label}] loaded {subscribers:,} confirmed subscribers with COPY in "
              f"{time.perf_counter() - started:.1f} s")
        issue_id = build_sample_issue(rt, now)
        if not autovacuum:  # diagnosis: what vacuuming the ledger during the send costs
            with rt.engine.begin() as connection:
                connection.exec_driver_sql("ALTER TABLE deliveries SET (autovacuum_enabled = off)")
        message = message_bytes(rt, issue_id, now)
        print(f"[{label}] issue built; one message is {len(message):,} bytes")

        pool = [Worker(settings, f"{label}{i}", concurrency) for i in range(workers)]
        try:
            for worker in pool:
                worker.wait_ready()
            pids = {w.name: w.pids() for w in pool}
            baseline = {w.name: [peak_rss_mib(p) for p in pids[w.name]] for w in pool}
            profilers = [start_profiler(pid, profile) for w in pool
                         for pid in pids[w.name][1:]] if profile else []

            cpu_before = {pid: cpu_seconds(pid) for w in pool for pid in pids[w.name]}
            cpu_before[sink.pid] = cpu_seconds(sink.pid)
            wait_before = {pid: runnable_wait_seconds(pid) for pid in cpu_before}
            pg_before = postgres_cpu_seconds()
            t0 = time.perf_counter()
            rows = start_and_ring(rt, issue_id, datetime.now(UTC))
            t1 = time.perf_counter()
            print(f"[{label}] fan-out: {rows:,} ledger rows written and rung in {t1 - t0:.2f} s")

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
                    ours = sink.received - already_received
                    print(f"  ... {ours:,} received by the sink, "
                          f"{ours / (last_report - t1):,.0f}/s")
                time.sleep(0.2)
            t2 = time.perf_counter()
            cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
            waited = {pid: runnable_wait_seconds(pid) - before for pid, before in wait_before.items()}
            pg_cpu = postgres_cpu_seconds() - pg_before
            peaks = {w.name: [peak_rss_mib(p) for p in pids[w.name]] for w in pool}
            load = os.getloadavg()[0]
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        finally:
            for worker in pool:
                worker.stop()

        received = sink.wait_for(already_received + subscribers) - already_received
        # The workers' database sessions ended with them, and with that wrote their
        # counts to the statistics: every UPDATE the send made is in n_tup_upd.
        with rt.engine.connect() as connection:
            versions, hot_versions = row_updates(connection)
            vacuumed = vacuums(connection)
        span = sent_span(rt, issue_id)
        _, counts = issue_state(rt, issue_id)
        rt.close()
    wall = t2 - t0
    return PassFigures(
        label=label, message_size=len(message), message=message, counts=counts,
        received=received, fan_out=t1 - t0, send_seconds=t2 - t1, wall=wall, span=span,
        peaks=peaks, baseline=baseline,
        cpu_shares={name: [cpu[p] / wall for p in pids[name]] for name in pids},
        sink_cpu=cpu[sink.pid] / wall, pg_cpu=pg_cpu / wall, load=load,
        sink_wait=waited[sink.pid] / wall,
        pool_wait=[waited[p] / wall for name in pids for p in pids[name][1:]],
        row_versions=versions, hot_versions=hot_versions, vacuums=vacuumed)


@dataclass(frozen=True)
class RawRun:
    """One raw sender run into the sink, with the sink's and PostgreSQL's CPU meanwhile."""

    figures: RawFigures
    sink_cpu: float  # of one core
    pg_cpu: float
    received: int  # the sink's own count of the run's messages
    sink_wait: float  # share of the run the sink waited for a CPU while runnable

    @classmethod
    def of(cls, sink: SmtpSink, message: bytes, messages: int, processes: int) -> RawRun:
        received = sink.received
        sink_before, pg_before = cpu_seconds(sink.pid), postgres_cpu_seconds()
        wait_before = runnable_wait_seconds(sink.pid)
        figures = measure("127.0.0.1", sink.port, message, messages, processes)
        sink_cpu = (cpu_seconds(sink.pid) - sink_before) / figures.seconds
        pg_cpu = (postgres_cpu_seconds() - pg_before) / figures.seconds
        sink_wait = (runnable_wait_seconds(sink.pid) - wait_before) / figures.seconds
        return cls(figures, sink_cpu, pg_cpu, sink.wait_for(received + messages) - received,
                   sink_wait)


def print_pass(f: PassFigures, subscribers: int) -> None:
    send_rate, end_to_end = subscribers / f.send_seconds, subscribers / f.wall
    print(f"[{f.label}] message            {f.message_size:,} bytes")
    print(f"[{f.label}] ledger             {f.counts}")
    print(f"[{f.label}] sink received      {f.received:,}")
    print(f"[{f.label}] fan-out            {f.fan_out:.2f} s")
    print(f"[{f.label}] send (ring->finished)  {f.send_seconds:.2f} s = {send_rate:,.0f} "
          f"messages/s (first->last sent_at {f.span:.2f} s)")
    print(f"[{f.label}] end to end         {f.wall:.2f} s = {end_to_end:,.0f} messages/s")
    for name in f.peaks:
        now_mib = ", ".join(f"{m:.0f}" for m in f.peaks[name])
        was_mib = ", ".join(f"{m:.0f}" for m in f.baseline[name])
        print(f"[{f.label}] peak RSS {name:10s}{now_mib} MiB (main, pool children; "
              f"{was_mib} when ready)")
    for name, shares in f.cpu_shares.items():
        print(f"[{f.label}] CPU {name:15s}{', '.join(f'{s:.0%}' for s in shares)} of one core "
              f"(main, pool children)")
    print(f"[{f.label}] CPU smtp-sink      {f.sink_cpu:.0%} of one core")
    print(f"[{f.label}] CPU PostgreSQL     {f.pg_cpu:.0%} of one core (every backend on the machine)")
    print(f"[{f.label}] waiting for a CPU  smtp-sink {f.sink_wait:.0%} of the time, pool children "
          f"{', '.join(f'{w:.0%}' for w in f.pool_wait)} (runnable, not running)")
    print(f"[{f.label}] ledger row versions {f.row_versions / subscribers:.2f} a message "
          f"({f.row_versions:,}, {f.hot_versions:,} of them HOT)")
    print(f"[{f.label}] ledger autovacuum  {f.vacuums[0]} runs, autoanalyze {f.vacuums[1]} "
          f"(runs finished by the end of the send)")
    print(f"[{f.label}] load average       {f.load:.1f} at the end of the send")


def run(subscribers: int, workers: int, concurrency: int, raw_messages: int,
        batch_size: int, profile: Path | None = None, synchronous_commit: bool = True,
        dkim: str = "", connections: int = 2, sink_nice: int = 0,
        autovacuum: bool = True) -> None:
    raw_n = raw_messages or min(subscribers, 100_000)
    with SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="chapar-bench-") as folder:
        if sink_nice:
            # As if the relay ran on a host of its own: the sink is not starved by
            # the senders' processes, in our run and in the raw one alike.
            os.setpriority(os.PRIO_PROCESS, sink.pid, sink_nice)
        # The raw sender runs before our send and after it, and ours is compared with
        # the mean of the two: this machine's speed drifts by a fifth within minutes,
        # and one raw run on one side of ours made that drift the ratio's.
        with loaded_issue(1, datetime.now(UTC)) as (rt, issue_id):
            sample = message_bytes(rt, issue_id, datetime.now(UTC))
        before = RawRun.of(sink, sample, raw_n, workers * concurrency)
        passes = [send_pass("plain", sink, Path(folder), subscribers, workers, concurrency,
                            batch_size, sink.received, None, profile, synchronous_commit,
                            connections, autovacuum=autovacuum)]
        if dkim:
            passes.append(send_pass("dkim", sink, Path(folder), subscribers, workers,
                                    concurrency, batch_size, sink.received,
                                    dkim_key(Path(folder), dkim), None, synchronous_commit,
                                    connections, autovacuum=autovacuum))
        if len(passes[0].message) != len(sample):
            raise RuntimeError("the raw runs' message is not the size of the one we sent")
        after = RawRun.of(sink, passes[0].message, raw_n, workers * concurrency)
    raw_rate = (before.figures.per_second + after.figures.per_second) / 2

    print()
    print(f"subscribers            {subscribers:,}")
    if sink_nice:
        print(f"smtp-sink              nice {sink_nice} (ours and raw alike)")
    print(f"workers                {workers} x concurrency {concurrency}, batch {batch_size}, "
          f"{connections} SMTP connection{'s' if connections > 1 else ''} per pool process"
          + ("" if synchronous_commit else ", synchronous_commit off (diagnosis)")
          + ("" if autovacuum else ", no autovacuum of the ledger (diagnosis)"))
    for f in passes:
        print_pass(f, subscribers)
    print(f"load average           {os.getloadavg()[0]:.1f} (2 cores, shared with other work)")
    for when, raw in (("before", before), ("after", after)):
        f = raw.figures
        print(f"raw sender, {when:6s}     {f.messages:,} in {f.seconds:.2f} s = "
              f"{f.per_second:,.0f} messages/s ({f.processes} processes, unsigned message, "
              f"sink counted {raw.received:,})")
        print(f"raw CPU, {when:6s}        senders {f.sender_cpu / f.seconds:.0%} of one core "
              f"together, smtp-sink {raw.sink_cpu:.0%}, PostgreSQL {raw.pg_cpu:.0%} (idle); "
              f"sink {raw.sink_cpu * f.seconds / f.messages * 1e6:.0f} us a message, "
              f"waiting for a CPU {raw.sink_wait:.0%} of the time")
    print(f"raw pipelining sender  {raw_rate:,.0f} messages/s, the mean of the two")
    for f in passes:
        ours = subscribers / f.send_seconds
        print(f"sink CPU per message   [{f.label}] {f.sink_cpu * f.wall / subscribers * 1e6:.0f} us; "
              f"at our sending rate the sink was busy {f.sink_cpu * f.wall / f.send_seconds:.0%}, "
              f"in the raw runs {before.sink_cpu:.0%} and {after.sink_cpu:.0%} "
              f"({ours:,.0f} vs {raw_rate:,.0f}/s)")
    for f in passes:
        print(f"ours / raw [{f.label}]{' ' * (6 - len(f.label))}  "
              f"{subscribers / f.wall / raw_rate:.0%} end to end, "
              f"{subscribers / f.send_seconds / raw_rate:.0%} sending only "
              f"(against the raw run before: {subscribers / f.wall / before.figures.per_second:.0%}"
              f", after: {subscribers / f.wall / after.figures.per_second:.0%}, end to end)")
    if dkim:
        plain, signed = passes
        print(f"DKIM signed / unsigned {plain.wall / signed.wall:.0%} end to end, "
              f"{plain.send_seconds / signed.send_seconds:.0%} sending only "
              f"(DKIM cost {1 - plain.wall / signed.wall:.0%} of end-to-end throughput, "
              f"{'RSA-2048' if dkim == 'rsa' else 'Ed25519'} key)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pool processes per worker (2 measured fastest on 2 cores)")
    parser.add_argument("--raw-messages", type=int, default=0,
                        help="messages for the raw sender (default: N, at most 100,000)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--sink-nice", type=int, default=0,
                        help="run smtp-sink at this nice value (negative: ahead of the senders)")
    parser.add_argument("--connections", type=int, default=2,
                        help="SMTP connections per pool process (CHAPAR_SMTP_CONNECTIONS)")
    parser.add_argument("--profile", type=Path,
                        help="sample each pool process with py-spy into this folder")
    parser.add_argument("--no-synchronous-commit", action="store_true",
                        help="diagnosis: commits do not wait for the WAL flush")
    parser.add_argument("--no-autovacuum", action="store_true",
                        help="diagnosis: autovacuum off for the ledger during the send")
    parser.add_argument("--dkim", nargs="?", const="rsa", default="", choices=["rsa", "ed25519"],
                        help="then send the issue again, DKIM-signed with a generated key "
                             "(RSA-2048 by default, or Ed25519)")
    args = parser.parse_args()
    run(args.subscribers, args.workers, args.concurrency, args.raw_messages, args.batch_size,
        args.profile, not args.no_synchronous_commit, args.dkim, args.connections,
        args.sink_nice, autovacuum=not args.no_autovacuum)


if __name__ == "__main__":
    main()
