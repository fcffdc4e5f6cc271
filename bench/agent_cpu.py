"""Where one pool process's CPU goes, a message at a time: the send path outside Celery.

One `DeliveryAgent` (what each pool process runs) sends an issue to N readers into
`smtp-sink`, on a throwaway PostgreSQL database, from this process's main thread.
Prints, per message: this process's user and system CPU, PostgreSQL's CPU, and the
main thread's CPU split into building messages, the SMTP exchange, and each kind of
ledger transaction (by the function `_db` runs), each measured with
`time.thread_time()` around it (about a microsecond of its own per measurement).
No Celery, no second process: the figures move less than `send_issue`'s, so they
show what a change to the send path costs or saves. Compare runs made one after
the other on a quiet machine.

    .venv/bin/python -m bench.agent_cpu --subscribers 20000 [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.pipeline import load_subscribers, own_redis_db, postgres_cpu_seconds, throwaway_database
from bench.send_issue import build_sample_issue
from bench.sink import SmtpSink
from service.delivery import sender
from service.delivery.control import start_and_ring
from service.runtime import Runtime
from service.settings import Settings


class Split:
    """Thread CPU seconds by part; only the outermost measured call counts."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._inside = False

    def measure(self, part: str, call: Callable[[], Any]) -> Any:
        if self._inside:
            return call()
        self._inside = True
        began = time.thread_time()
        try:
            return call()
        finally:
            self.seconds[part] += time.thread_time() - began
            self._inside = False


def instrumented(split: Split) -> Callable[[], None]:
    """Measure the agent's building, SMTP exchange and ledger work; returns the undo."""
    build, db, interleaved = (sender.BuildAhead._build, sender.DeliveryAgent._db,
                              sender.send_interleaved)

    def timed_build(self: sender.BuildAhead, *args: Any) -> Any:
        return split.measure("building messages", lambda: build(self, *args))

    def timed_db(self: sender.DeliveryAgent, work: Any, **kwargs: Any) -> Any:
        name = getattr(getattr(work, "func", work), "__name__", "?")
        return split.measure(f"ledger: {name}", lambda: db(self, work, **kwargs))

    def timed_exchange(parts: Any, between: Any = None) -> Any:
        built = split.seconds["building messages"]
        began = time.thread_time()
        try:
            return interleaved(parts, between)
        finally:  # the messages built while waiting for replies are building's
            split.seconds["SMTP exchange"] += (time.thread_time() - began
                                               - (split.seconds["building messages"] - built))

    sender.BuildAhead._build = timed_build  # type: ignore[method-assign]
    sender.DeliveryAgent._db = timed_db  # type: ignore[method-assign]
    sender.send_interleaved = timed_exchange

    def undo() -> None:
        sender.BuildAhead._build = build  # type: ignore[method-assign]
        sender.DeliveryAgent._db = db  # type: ignore[method-assign]
        sender.send_interleaved = interleaved

    return undo


def one_run(subscribers: int) -> None:
    now = datetime.now(UTC)
    with SmtpSink() as sink, tempfile.TemporaryDirectory() as folder, \
            throwaway_database() as database_url, own_redis_db() as redis_url:
        settings = Settings(
            environment="development", data_dir=Path(folder), database_url=database_url,
            broker_url=redis_url, smtp_url=sink.url, secret_key=os.urandom(24).hex(),
            public_url="https://news.example.test/newsletter",
            from_address="newsletter@news.example.test",
        )
        rt = Runtime.from_settings(settings)
        try:
            load_subscribers(database_url, subscribers, now)
            issue_id = build_sample_issue(rt, now)
            start_and_ring(rt, issue_id, datetime.now(UTC))
            agent = sender.DeliveryAgent(rt)
            agent.message_for(issue_id)  # the issue's message, built once per process
            split = Split()
            undo = instrumented(split)
            try:
                before, pg_before = resource.getrusage(resource.RUSAGE_SELF), postgres_cpu_seconds()
                thread_before, started = time.thread_time(), time.perf_counter()
                sent = 0
                while True:
                    report = agent.deliver(issue_id, budget=float("inf"))
                    sent += report.outcomes["sent"]
                    if report.finished or not report.claimed:
                        break
                wall = time.perf_counter() - started
                thread = time.thread_time() - thread_before
                after, pg_after = resource.getrusage(resource.RUSAGE_SELF), postgres_cpu_seconds()
            finally:
                undo()
                agent.idle.close()
            received = sink.wait_for(subscribers)
        finally:
            rt.close()

    def us(seconds: float) -> str:
        return f"{seconds / max(1, sent) * 1e6:.1f} us"

    print(f"{sent:,} sent ({received:,} counted by the sink) in {wall:.2f} s = "
          f"{sent / wall:,.0f} msg/s")
    print(f"  a message: user {us(after.ru_utime - before.ru_utime)}, "
          f"system {us(after.ru_stime - before.ru_stime)}, "
          f"PostgreSQL {us(pg_after - pg_before)}")
    print(f"  the main thread: {us(thread)}, of which "
          + ", ".join(f"{part} {us(seconds)}" for part, seconds in split.seconds.most_common())
          + f", the rest {us(thread - sum(split.seconds.values()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.runs):
        one_run(args.subscribers)


if __name__ == "__main__":
    main()
