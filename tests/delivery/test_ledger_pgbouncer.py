"""Claims through PgBouncer in transaction mode: each claim is one transaction, so its locks
(the issue's row, rows due again taken with SKIP LOCKED) hold on whichever server connection
the pooler lends, and workers still split the rows.

PgBouncer 1.18 (Debian 12) keeps no prepared statements across transactions, so these
runtimes set CHAPAR_DATABASE_PREPARED_STATEMENTS=false, as the README says to.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control, ledger
from service.digests.models import IssueStatus
from service.runtime import Runtime
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_chaos import issue_status, wait_until_finished
from tests.support.pgbouncer import PrivatePgBouncer, pgbouncer_installed
from tests.support.processes import start_worker
from tests.support.smtp import SmtpRecorder

pytestmark = pytest.mark.skipif(not pgbouncer_installed(),
                                reason="pgbouncer is not installed (scripts/test installs it)")
ROWS = 400
LEASE = timedelta(minutes=5)


@pytest.fixture
def pooler(postgresql_url: str) -> Iterator[PrivatePgBouncer]:
    bouncer = PrivatePgBouncer(postgresql_url, pool_size=2).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def through_pooler(pooler: PrivatePgBouncer, redis_db: str, smtp: SmtpRecorder,
                   tmp_path: Path) -> Iterator[Runtime]:
    # One connection per process and no overflow, as the README's budget has it for workers:
    # a pool process that needed a second connection at once would wait, then fail.
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=pooler.url, database_prepared_statements=False,
        database_pool_size=1, database_max_overflow=0,
        broker_url=redis_db, smtp_url=smtp.url, lease_seconds=30, send_batch_size=50))
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def sending_issue(rt: Runtime) -> int:
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, ROWS)
        issue_id = make_issue(session).id
        ledger.start_send(session, issue_id, utcnow(), timedelta(hours=1))
    return issue_id


def test_claims_at_once_through_pgbouncer_take_disjoint_rows(through_pooler: Runtime) -> None:
    rt = through_pooler
    issue_id = sending_issue(rt)
    other = Runtime.from_settings(rt.settings)  # a second worker: its own client connections
    taken: list[list[int]] = [[], []]
    found_in_round: list[list[int]] = [[], []]
    together = threading.Barrier(2, timeout=30)

    def claim(runtime: Runtime, worker: int) -> None:
        # Each claim is its own transaction on whichever server connection the pooler
        # lends, and both workers claim at once in every round. The issue's row lock
        # orders them (it lives on the server connection of the transaction holding
        # it); the second starts after the cursor the first advanced.
        for round_ in range(ROWS):
            together.wait()
            with unit_of_work(runtime.sessions) as session:
                found = ledger.claim_batch(session, issue_id, f"w{worker}-{round_}", utcnow(),
                                           30, LEASE)
            taken[worker] += [r.delivery_id for r in found]
            found_in_round[worker].append(len(found))
            together.wait()  # both have claimed this round: both see the same counts
            if found_in_round[0][round_] == found_in_round[1][round_] == 0:
                return

    try:
        threads = [threading.Thread(target=claim, args=(runtime, i))
                   for i, runtime in enumerate((rt, other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "a claim hung"
    finally:
        other.close()
    both = Counter(taken[0] + taken[1])
    assert len(both) == ROWS and set(both.values()) == {1}, "a row claimed twice"
    assert taken[0] and taken[1], "one worker took every row"


def test_two_real_workers_send_an_issue_through_pgbouncer(through_pooler: Runtime,
                                                          smtp: SmtpRecorder) -> None:
    """The whole send path (fan-out, ANALYZE, claims, outcomes, sweeps) through the pooler."""
    rt = through_pooler
    with unit_of_work(rt.sessions) as session:
        emails = add_subscribers(session, ROWS)
        issue_id = make_issue(session).id
    workers = [start_worker(rt.settings, concurrency=1, name=f"w{i}") for i in range(2)]
    try:
        assert control.start_and_ring(rt, issue_id, utcnow()) == ROWS
        wait_until_finished(rt, issue_id, timeout=120)
    finally:
        for worker in workers:
            worker.stop()
    assert issue_status(rt, issue_id) is IssueStatus.SENT
    assert smtp.counts() == Counter({email: 1 for email in emails})
    for worker in workers:  # no task waited for a second connection and gave up
        assert "QueuePool limit" not in "".join(worker.output), worker.tail()
