"""Readers at scale: the weekly growth query on a long history, and a desk import's rate.

    .venv/bin/python -m bench.readers --subscribers 1000000 --import-rows 100000

Loads `--subscribers` confirmed readers by COPY into a throwaway PostgreSQL database,
gives each a two-year history in SQL (a request, a confirmation for seven in ten, an
unsubscribe for one in ten), then prints how long `weekly_growth` takes for 12 and 52
weeks (best of three) with the plan's top line, and how fast `run_import` (the task
body a worker runs) imports a file of `--import-rows` new addresses.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import create_engine, text

from bench.pipeline import load_subscribers, throwaway_database
from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.settings import Settings
from service.staff.audit import CLI
from service.subscribers import imports
from service.subscribers.growth import weekly_growth
from service.subscribers.models import Status

HISTORY = """
INSERT INTO subscriber_events (subscriber_id, at, kind, source)
SELECT id, :now - (id % 730) * interval '1 day' - (id % 1440) * interval '1 minute', 'subscribe', 'bench'
FROM subscribers;
INSERT INTO consent_records (subscriber_id, at, kind, source, nonce)
SELECT id, :now - (id % 730) * interval '1 day' - (id % 1440) * interval '1 minute', 'subscribe', 'bench',
       'n' || id FROM subscribers;
INSERT INTO subscriber_events (subscriber_id, at, kind, source)
SELECT id, :now - (id % 730) * interval '1 day' + interval '3 hours', 'confirm', 'bench'
FROM subscribers WHERE id % 10 < 7;
INSERT INTO consent_records (subscriber_id, at, kind, source, nonce)
SELECT id, :now - (id % 730) * interval '1 day' + interval '3 hours', 'confirm', 'bench', 'n' || id
FROM subscribers WHERE id % 10 < 7;
INSERT INTO subscriber_events (subscriber_id, at, kind, source)
SELECT id, :now - (id % 365) * interval '1 day', 'unsubscribe', 'bench'
FROM subscribers WHERE id % 10 = 9;
"""


def add_history(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in filter(str.strip, HISTORY.split(";")):
                connection.execute(text(statement), {"now": utcnow()})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE subscriber_events"))
            connection.execute(text("VACUUM ANALYZE consent_records"))
    finally:
        engine.dispose()


def time_growth(rt: Runtime, weeks: int) -> tuple[float, int]:
    best = float("inf")
    subscribed = 0
    for _ in range(3):
        with rt.sessions() as session:
            started = time.perf_counter()
            growth = weekly_growth(session, utcnow(), rt.settings.tz, weeks)
            best = min(best, time.perf_counter() - started)
            subscribed = growth.total("subscribed")
    return best, subscribed


def plan_top(rt: Runtime) -> str:
    """EXPLAIN's first line for one week's event count, to see the index at work."""
    since = utcnow() - timedelta(weeks=12)
    with rt.engine.connect() as connection:
        rows = connection.execute(text(
            "EXPLAIN SELECT kind, count(*) FROM subscriber_events WHERE kind IN ('subscribe', 'confirm') "
            "AND at >= :since GROUP BY kind"), {"since": since}).scalars().all()
    return " / ".join(str(row).strip() for row in rows[:3])


def time_import(rt: Runtime, rows: int) -> float:
    body = "email\n" + "".join(f"new{n}@import.example.test\n" for n in range(rows))
    upload = imports.check_upload("bench.csv", body.encode(), len(body) + 1)
    with unit_of_work(rt.sessions) as session:
        job_id = imports.start_import(session, CLI, upload, source="import:bench", import_as=Status.CONFIRMED,
                                      now=utcnow()).id
    started = time.perf_counter()
    imports.run_import(rt, job_id, utcnow)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200_000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    with throwaway_database() as url, TemporaryDirectory() as folder:
        started = time.perf_counter()
        load_subscribers(url, args.subscribers, utcnow())
        add_history(url)
        loaded = time.perf_counter() - started
        print(f"loaded {args.subscribers:,} readers with their history in {loaded:.1f} s")
        rt = Runtime.from_settings(Settings(environment="test", database_url=url, data_dir=Path(folder),
                                            secret_key="bench-secret-key-0123456789-abcdefghijklmnop",
                                            import_batch_size=args.batch_size))
        try:
            for weeks in (12, 52):
                seconds, subscribed = time_growth(rt, weeks)
                print(f"weekly_growth, {weeks} weeks: {seconds * 1000:.0f} ms (best of 3; "
                      f"{subscribed:,} requests in range)")
            print(f"plan: {plan_top(rt)}")
            seconds = time_import(rt, args.import_rows)
            print(f"desk import of {args.import_rows:,} new addresses (batch {args.batch_size}): "
                  f"{seconds:.1f} s, {args.import_rows / seconds:,.0f} addresses/s")
        finally:
            rt.close()


if __name__ == "__main__":
    main()
