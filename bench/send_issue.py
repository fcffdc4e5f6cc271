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
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bench.pipeline import (
    Worker,
    load_subscribers,
    own_redis_db,
    peak_rss_mib,
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
from service.settings import REPO_ROOT, Settings

SAMPLE_FEED = REPO_ROOT / "service" / "articles" / "sample" / "feed.xml"


def build_sample_issue(rt: Runtime, now: datetime) -> int:
    """The sample feed's articles, built into one draft issue (rendered and inlined once)."""
    articles = parse_feed(SAMPLE_FEED.read_bytes(), "https://news.example.test/feed")
    with unit_of_work(rt.sessions) as session:
        upsert_articles(session, articles, now)
        result = build_issue(session, rt.settings, now)
        if result.issue is None:
            raise RuntimeError(f"no issue built: {result.reason}")
        return result.issue.id


def message_bytes(rt: Runtime, issue_id: int, now: datetime) -> bytes:
    """One recipient's complete message, exactly as our sender builds it."""
    message = DeliveryAgent(rt).message_for(issue_id)
    assert message is not None
    return message.render(Recipient(1, 1, "reader0@news0.example.test"), now)


def issue_state(rt: Runtime, issue_id: int) -> tuple[IssueStatus, dict[str, int]]:
    with rt.sessions() as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        return issue.status, ledger.counts(session, issue_id)


def sent_span(rt: Runtime, issue_id: int) -> float:
    """Seconds from the first to the last `sent` stamp in the ledger."""
    with rt.sessions() as session:
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at))
            .where(Delivery.issue_id == issue_id)).one()
    return (last - first).total_seconds() if first and last else 0.0


def run(subscribers: int, workers: int, concurrency: int, raw_messages: int,
        batch_size: int) -> None:
    now = datetime.now(UTC)
    with throwaway_database() as database_url, own_redis_db() as redis_url, \
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

            t0 = time.perf_counter()
            rows = start_and_ring(rt, issue_id, datetime.now(UTC))
            t1 = time.perf_counter()
            print(f"fan-out: {rows:,} ledger rows written and rung in {t1 - t0:.2f} s")

            last_report = t1
            timeout = 120 + subscribers / 100
            while True:
                status, counts = issue_state(rt, issue_id)
                if status is IssueStatus.SENT:
                    break
                if time.perf_counter() - t1 > timeout:
                    raise RuntimeError(f"not finished after {timeout:.0f} s: {counts}")
                if time.perf_counter() - last_report >= 10:
                    last_report = time.perf_counter()
                    done = counts.get("sent", 0)
                    print(f"  ... {done:,} sent, {done / (last_report - t1):,.0f}/s")
                time.sleep(0.1)
            t2 = time.perf_counter()
            peaks = {w.name: [peak_rss_mib(p) for p in pids[w.name]] for w in pool}
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
    print(f"workers                {workers} x concurrency {concurrency}, batch {batch_size}")
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
    print(f"raw pipelining sender  {raw.messages:,} in {raw.seconds:.2f} s = "
          f"{raw.per_second:,.0f} messages/s ({raw.processes} processes)")
    print(f"ours / raw             {end_to_end / raw.per_second:.0%} end to end, "
          f"{send_rate / raw.per_second:.0%} sending only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size per worker")
    parser.add_argument("--raw-messages", type=int, default=0,
                        help="messages for the raw sender (default: N, at most 100,000)")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    run(args.subscribers, args.workers, args.concurrency, args.raw_messages, args.batch_size)


if __name__ == "__main__":
    main()
