"""The database goes away for 15 s in the middle of a send: nobody gets a second copy.

Real processes (two workers, beat) reach this test's PostgreSQL database through a
TCP proxy the test cuts: every connection dropped, new ones refused, then resumed
(other tests, which use the server directly, are undisturbed). Pool processes that
had sent a chunk keep its outcomes and write them when the database answers, within
their lease, so no row is left uncertain and every reader gets the issue exactly
once. The same with the private Redis server stopped at the same time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.delivery import ledger
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import make_settings, truncate_all
from tests.delivery.test_recovery import begin, start_beat, wait_until_sent
from tests.support.processes import start_worker
from tests.support.redis_server import PrivateRedis
from tests.support.smtp import SmtpRecorder
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = 15.0
READERS = 2000
UNREACHABLE = "unreachable ("  # each process logs one line per outage: "database at ... unreachable (...)"


@dataclass
class Proxied:
    rt: Runtime  # the test's own connection, straight to PostgreSQL
    settings: Settings  # what the workers and beat get: PostgreSQL through the proxy
    proxy: TcpProxy


@pytest.fixture
def proxied(postgresql_url: str, private_redis: PrivateRedis, smtp: SmtpRecorder,
            tmp_path: Path) -> Iterator[Proxied]:
    url = make_url(postgresql_url)
    proxy = TcpProxy(url.port or 5432, url.host or "127.0.0.1").start()
    settings = make_settings(
        tmp_path, database_url=postgresql_url, broker_url=private_redis.url,
        redis_url=private_redis.url, smtp_url=smtp.url, retry_base_seconds=0.5,
        send_batch_size=200,
    )
    rt = Runtime.from_settings(settings)
    truncate_all(rt)
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    yield Proxied(rt, settings.model_copy(update={"database_url": through}), proxy)
    proxy.stop()
    truncate_all(rt)
    rt.close()


@pytest.mark.parametrize("redis_too", [False, True], ids=["database", "database-and-redis"])
def test_a_database_outage_mid_send_sends_each_reader_exactly_once(
        proxied: Proxied, private_redis: PrivateRedis, smtp: SmtpRecorder, tmp_path: Path,
        redis_too: bool) -> None:
    rt, proxy = proxied.rt, proxied.proxy
    assert proxied.settings.lease_seconds > OUTAGE_SECONDS  # the default lease
    beat = start_beat(proxied.settings, tmp_path)
    workers = [start_worker(proxied.settings, concurrency=2, name=f"w{i}") for i in range(2)]
    try:
        issue_id, emails = begin(rt, READERS)
        smtp.wait_for(lambda m: len(m) >= 400, timeout=60)
        proxy.cut()
        if redis_too:
            private_redis.stop()
        at_cut = len(smtp.messages)
        time.sleep(OUTAGE_SECONDS)
        during = len(smtp.messages) - at_cut
        print(f"cut after {at_cut} messages; {during} more reached the server during the outage")
        assert all(w.alive() for w in workers) and beat.alive()
        assert at_cut + during < READERS, "the send finished before the outage: nothing was tested"
        proxy.resume()
        if redis_too:
            private_redis.start()
        took = wait_until_sent(rt, issue_id, timeout=60)
        print(f"finished {took:.1f} s after the database came back")
        assert all(w.alive() for w in workers) and beat.alive()
    finally:
        for w in workers:
            w.stop()
        beat.stop()
    received = smtp.counts()
    with rt.sessions() as session:
        counts = ledger.counts(session, issue_id)
    print("ledger:", counts, "copies:", Counter(received.values()))
    assert received == Counter({e: 1 for e in emails})
    assert counts["sent"] == READERS and counts["possible_duplicates"] == 0
    # Pool processes in the middle of the send noticed, and each said so once.
    logged = [sum(line.count(UNREACHABLE) for line in w.output) for w in workers]
    print("outage lines per worker:", logged)
    assert sum(logged) >= 1
    assert all(n <= 3 for n in logged)  # at most once per process: the main one and two in the pool
