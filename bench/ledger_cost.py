"""What the ledger's statements cost a message on PostgreSQL, with no SMTP and no Celery.

The statements a pool process runs for one issue, in a loop against a throwaway
database, as one worker would run them: the 500-row claim and, per 30-row chunk,
the statement that records the previous chunk sent and marks this one `sending`
(`--model current`, what service/delivery runs). `--model claim-into-sending`
measures a design that is not in service/: each 30-row chunk is claimed straight
into `sending` by the statement that records the previous chunk, so a message
writes two row versions instead of three, and a cursor on (issue, subscriber)
keeps each claim from walking past the rows already sent.

    .venv/bin/python -m bench.ledger_cost --subscribers 100000 [--model current|claim-into-sending]

Prints, per message: wall time, PostgreSQL's CPU, this process's CPU, the row
versions written (PostgreSQL's own counters) and the WAL written; the fan-out's
time and WAL a row, and the size of the table and of its indexes at the end; and
per kind of statement (the claim, the chunk, the batch's end) its wall time and
the CPU of the PostgreSQL backend that ran it. The
machine must be quiet; compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from bench.pipeline import (
    cpu_seconds,
    postgres_cpu_seconds,
    row_updates,
)
from bench.send_issue import loaded_issue
from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import DeliveryStatus

T = TypeVar("T")
CHUNK = 30
BATCH = 500
LEASE = timedelta(seconds=20)

# The measured alternative: the previous chunk recorded sent and the next chunk claimed
# straight into `sending` in one statement. `after` is the highest subscriber id this
# worker claimed: the unique index on (issue_id, subscriber_id) takes the claim past
# every row already sent without reading them (a plain LIMIT scan re-reads them on
# every claim: 276 us of PostgreSQL's CPU a message at 100,000 on our 2-core machine).
CLAIM_INTO_SENDING = """
WITH recorded AS (""" + ledger._RECORD_SENT + """), picked AS (
    SELECT d.id, d.subscriber_id FROM deliveries AS d
    WHERE d.issue_id = %(issue)s AND d.subscriber_id > %(after)s
      AND d.status IN ('queued', 'deferred')
      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now())
      AND d.worker IS NULL
      AND EXISTS (SELECT 1 FROM issues AS i WHERE i.id = %(issue)s AND i.status = 'sending')
    ORDER BY d.subscriber_id
    LIMIT %(size)s
    FOR UPDATE OF d SKIP LOCKED
), readers AS (
    SELECT p.id, s.email, s.status IS NOT DISTINCT FROM 'confirmed' AS live
    FROM picked AS p LEFT JOIN LATERAL (
        SELECT email, status FROM subscribers WHERE id = p.subscriber_id OFFSET 0
    ) AS s ON true
)
UPDATE deliveries AS d
SET status = CASE WHEN r.live THEN 'sending' ELSE 'cancelled' END,
    attempts = CASE WHEN r.live THEN d.attempts + 1 ELSE d.attempts END,
    worker = %(worker)s, updated_at = now()
FROM readers AS r
WHERE d.id = r.id AND d.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING d.id, d.subscriber_id, r.live
"""


class Steps:
    """Wall time and the PostgreSQL backend's CPU, summed per kind of statement."""

    def __init__(self, connection: Connection) -> None:
        self.backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, work: Callable[[], T]) -> T:
        # The backend's CPU is read in clock ticks (10 ms): summed over thousands of
        # statements, each one's share averages out.
        cpu, wall = cpu_seconds(self.backend), time.perf_counter()
        result = work()
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu_seconds(self.backend) - cpu
        return result


def current(connection: Connection, issue_id: int, now: datetime, steps: Steps) -> int:
    """The worker's statements as service/delivery runs them; returns the rows sent.

    Per batch: the claim, a statement per chunk, and the batch's last outcomes with
    the end of its claim (`ledger.end_claim`).
    """
    done, batches = 0, 0
    while batch := steps.run("claim", partial(ledger.claim_in_one_statement, connection, issue_id,
                                              f"w{batches}", None, BATCH, LEASE)):
        worker, previous = f"w{batches}", list[int]()
        ids = [r.delivery_id for r in batch]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            steps.run("chunk", partial(ledger.record_sent_and_mark, connection, previous, chunk,
                                       worker, now, LEASE))
            previous = chunk
            done += len(chunk)
        steps.run("batch's end", partial(batch_end, connection, previous, worker, now))
        batches += 1
    return done


def batch_end(connection: Connection, sent: list[int], worker: str, now: datetime) -> None:
    """The batch's last transaction, as the worker runs it: the last outcomes, the claim's end."""
    with Session(bind=connection) as session:
        ledger.record_outcomes(session, [ledger.Outcome(i, DeliveryStatus.SENT, 250) for i in sent],
                               worker, now, 60, True)
        ledger.end_claim(session, worker, now, reached_all=True)


def rows_of(connection: Connection, statement: str, parameters: dict[str, object]) -> list[Any]:
    return list(connection.exec_driver_sql(statement, parameters).all())


def claim_into_sending(connection: Connection, issue_id: int, now: datetime, steps: Steps) -> int:
    done, previous, after = 0, list[int](), 0
    while rows := steps.run("claim into sending", partial(rows_of, connection, CLAIM_INTO_SENDING, {
            "issue": issue_id, "worker": "w", "sent": previous, "size": CHUNK, "lease": LEASE,
            "now": now, "after": after})):
        previous = [delivery_id for delivery_id, _, live in rows if live]
        after = max(subscriber_id for _, subscriber_id, _ in rows)
        done += len(previous)
    ledger.record_sent_and_mark(connection, previous, [], "w", now, LEASE)
    return done


MODELS = {"current": current, "claim-into-sending": claim_into_sending}


def wal_position(engine: Engine) -> int:
    """PostgreSQL's WAL insert position in bytes: the difference of two is the WAL written."""
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").scalar_one())


def run(subscribers: int, model: str) -> None:
    now = datetime.now(UTC)
    with loaded_issue(subscribers, now) as (rt, issue_id):
        fan_out = time.perf_counter(), wal_position(rt.engine)
        with unit_of_work(rt.sessions) as session:
            ledger.start_send(session, issue_id, now, timedelta(days=1))
        fan_out = time.perf_counter() - fan_out[0], wal_position(rt.engine) - fan_out[1]
        with rt.engine.connect() as plain:
            connection = plain.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("ANALYZE deliveries")  # as start_and_ring does
            updates_before, hot_before = row_updates(connection)
            wal = wal_position(rt.engine)
            wall, pg, own = time.perf_counter(), postgres_cpu_seconds(), time.process_time()
            steps = Steps(connection)
            sent = MODELS[model](connection, issue_id, now, steps)
            wall = time.perf_counter() - wall
            pg, own = postgres_cpu_seconds() - pg, time.process_time() - own
            wal = wal_position(rt.engine) - wal
            updates, hot_updates = row_updates(connection)
            left = connection.exec_driver_sql(
                "SELECT count(*) FROM deliveries WHERE status <> 'sent'").scalar_one()
            pages, index_pages = connection.exec_driver_sql(
                "SELECT pg_relation_size('deliveries') / current_setting('block_size')::int,"
                " pg_indexes_size('deliveries') / current_setting('block_size')::int"
            ).one()
    per = 1e6 / subscribers
    print(f"model                {model}")
    print(f"rows sent            {sent:,} of {subscribers:,} ({left} not sent)")
    print(f"wall                 {wall * per:.0f} us a message "
          f"({subscribers / wall:,.0f} rows/s, one worker)")
    print(f"PostgreSQL CPU       {pg * per:.0f} us a message")
    print(f"this process's CPU   {own * per:.0f} us a message")
    print(f"row versions         {(updates - updates_before) / subscribers:.2f} a message "
          f"({hot_updates - hot_before:,} of {updates - updates_before:,} HOT)")
    print(f"table                {pages:,} pages of deliveries, {index_pages:,} of its indexes")
    print(f"fan-out              {fan_out[0]:.2f} s, {fan_out[1] / subscribers:,.0f} bytes of WAL a row")
    print(f"WAL                  {wal / subscribers:,.0f} bytes a message (the statements above)")
    for name, seconds in steps.wall.items():
        print(f"  {name:18} {seconds * per:5.1f} us a message, its backend's CPU "
              f"{steps.cpu[name] * per:5.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--model", choices=sorted(MODELS), default="current")
    args = parser.parse_args()
    run(args.subscribers, args.model)


if __name__ == "__main__":
    main()
