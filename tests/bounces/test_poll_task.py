"""The `chapar.poll_bounces` task in a real Celery worker, draining a POP3 mailbox."""

from __future__ import annotations

import time
from pathlib import Path

from service.bounces.verp import VerpSigner
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber
from tests.bounces.factories import add_subscriber, sent_delivery
from tests.bounces.mailservers import Maildrop, MailServer
from tests.bounces.messages import hard_bounce
from tests.conftest import make_settings, truncate_all
from tests.support.processes import start_worker


def test_a_worker_polls_the_mailbox_and_marks_the_reader_bounced(
        backend: str, database_url: str, redis_db: str, tmp_path: Path) -> None:
    broker = redis_db if backend == "postgresql" else ""  # "": kombu's filesystem transport
    drop = Maildrop()
    with MailServer("pop3", drop) as server:
        rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                                 broker_url=broker, bounce_mailbox_url=server.url))
        truncate_all(rt)
        with rt.sessions.begin() as session:
            reader = add_subscriber(session, "gone@example.test")
            verp = VerpSigner(rt.settings.secret_key).address(sent_delivery(session, reader).id,
                                                              rt.settings.verp_domain)
            reader_id = reader.id
        drop.messages.append(hard_bounce(verp, "gone@example.test"))
        worker = start_worker(rt.settings, concurrency=1, queues="default")
        try:
            deadline = time.monotonic() + 60
            status = Status.CONFIRMED
            next_ring = 0.0
            while time.monotonic() < deadline and status is not Status.BOUNCED:
                if time.monotonic() >= next_ring:
                    # Beat rings every few minutes; a ring lost on a shared broker is
                    # simply followed by the next one, and polling twice is harmless.
                    rt.ring("chapar.poll_bounces")
                    next_ring = time.monotonic() + 10
                time.sleep(0.2)
                with rt.sessions() as session:
                    found = session.get(Subscriber, reader_id)
                    assert found is not None
                    status = found.status
            assert status is Status.BOUNCED, worker.tail()
            # The poller deletes a report only after the transaction that recorded it has
            # committed, so the mailbox empties a moment after the status changes.
            while drop.remaining() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert drop.remaining() == []
        finally:
            worker.stop()
            truncate_all(rt)
            rt.close()
