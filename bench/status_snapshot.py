"""What one status snapshot (`chapar status`, the ops console, /metrics) costs PostgreSQL.

Loads the subscribers, fans an issue out to them and leaves its ledger as a send
half-way through would: two thirds sent over the last ten minutes, 1 % deferred,
0.1 % failed, 0.05 % uncertain, the cursor two thirds of the way. Then takes a few
snapshots, each timed, with the CPU every PostgreSQL process used meanwhile. The
wall time includes asking the broker which tasks are running (no worker answers
here, so it waits for its timeout).

    .venv/bin/python -m bench.status_snapshot --subscribers 1000000 [--snapshots 4]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.pipeline import postgres_cpu_seconds
from bench.send_issue import loaded_issue
from service.db import unit_of_work
from service.delivery import ledger
from service.ops.status import snapshot

HALF_WAY = (
    "UPDATE deliveries SET status = 'sent', last_code = 250,"
    " sent_at = now() - random() * interval '10 minutes' WHERE id % 3 <> 0",
    "UPDATE deliveries SET status = 'deferred', next_attempt_at = now() + interval '5 minutes',"
    " last_code = 451, last_error = 'try later' WHERE id % 100 = 0",
    "UPDATE deliveries SET status = 'failed', last_code = 550, last_error = 'no such user'"
    " WHERE id % 1000 = 3",
    "UPDATE deliveries SET status = 'uncertain', uncertain_count = 1 WHERE id % 2000 = 6",
    "UPDATE issues SET claimed_through = (SELECT max(subscriber_id) * 2 / 3 FROM deliveries)",
)


def run(subscribers: int, snapshots: int) -> None:
    now = datetime.now(UTC)
    with loaded_issue(subscribers, now) as (rt, issue_id):
        with unit_of_work(rt.sessions) as session:
            ledger.start_send(session, issue_id, now, timedelta(days=1))
        with rt.engine.begin() as connection:
            for statement in HALF_WAY:
                connection.execute(text(statement))
        with rt.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE deliveries"))
        print(f"subscribers          {subscribers:,}, one issue two thirds sent")
        for n in range(snapshots):
            pg, wall = postgres_cpu_seconds(), time.perf_counter()
            snap = snapshot(rt, datetime.now(UTC))
            wall, pg = time.perf_counter() - wall, postgres_cpu_seconds() - pg
            counts = snap.issue.counts if snap.issue is not None else {}
            print(f"snapshot {n + 1}           {wall:.2f} s wall, PostgreSQL {pg:.2f} s of CPU"
                  f" (sent {counts.get('sent', 0):,}, deferred {counts.get('deferred', 0):,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=4)
    args = parser.parse_args()
    run(args.subscribers, args.snapshots)


if __name__ == "__main__":
    main()
