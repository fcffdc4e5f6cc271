"""End to end with a real Celery worker process and the in-process SMTP server.

PostgreSQL with a Redis broker (production), and SQLite with the filesystem broker
(the embedded default): subscribe over HTTP, receive the email, follow its link,
confirm, and leave again with a one-click POST.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status, Subscriber
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.support.processes import ChaparProcess, start_worker
from tests.support.smtp import Received, SmtpRecorder
from worker import tasks

READER = "reader@example.com"
ONE_CLICK = b"List-Unsubscribe=One-Click"


@pytest.fixture
def stack(backend: str, database_url: str, redis_db: str, tmp_path: Path,
          smtp: SmtpRecorder) -> Iterator[tuple[Runtime, ChaparProcess]]:
    """The web side in this process, and a real worker on the same database and broker."""
    broker = redis_db if backend == "postgresql" else ""  # "": kombu's filesystem transport
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                             smtp_url=smtp.url, broker_url=broker))
    truncate_all(rt)
    worker = start_worker(rt.settings, concurrency=1, queues="mail,default")
    try:
        yield rt, worker
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()


def mail_to(smtp: SmtpRecorder, address: str, worker: ChaparProcess) -> Received:
    try:
        messages = smtp.wait_for(lambda got: any(address in m.rcpt_tos for m in got), timeout=60)
    except AssertionError:
        raise AssertionError("no confirmation email; worker output:\n" + worker.tail()) from None
    return next(m for m in messages if address in m.rcpt_tos)


def confirm_path(received: Received) -> str:
    text = received.message.get_body(("plain",))
    assert text is not None
    [url] = re.findall(r"http://chapar\.test(/confirm/[A-Za-z0-9_.\-]+)", text.get_content())
    return url


def status_of(rt: Runtime, address: str) -> Status:
    with rt.sessions() as session:
        subscriber = store.find_by_email(session, address)
        assert subscriber is not None
        return subscriber.status


def test_subscribe_confirm_and_leave_with_one_click(stack: tuple[Runtime, ChaparProcess],
                                                    smtp: SmtpRecorder) -> None:
    rt, worker = stack
    web = TestClient(create_app(rt), raise_server_exceptions=False)
    for _ in range(5):  # an impatient reader presses the button again and again
        response = web.post("/subscribe", data={"email": "Reader@Example.com",
                                                "source": "subscribe-page"})
        assert response.status_code == 200 and "یک قدم مانده است" in response.text

    received = mail_to(smtp, READER, worker)
    assert received.message["Subject"] == "عضویت خود در خبرنامه هفتگی را تأیید کنید"
    path = confirm_path(received)

    page = web.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert status_of(rt, READER) is Status.PENDING  # a GET never confirms

    confirmed = web.post(path)
    assert confirmed.status_code == 200 and "عضویت شما تأیید شد" in confirmed.text
    assert status_of(rt, READER) is Status.CONFIRMED

    [preferences] = re.findall(r'href="http://chapar\.test(/preferences/[^"]+)"', confirmed.text)
    settings_page = web.get(preferences)
    [unsubscribe] = re.findall(r'action="http://chapar\.test(/unsubscribe/[^"]+)"',
                               settings_page.text)
    web.cookies.clear()
    left = web.post(unsubscribe, content=ONE_CLICK,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert left.status_code == 200 and "عضویت شما لغو شد" in left.text
    assert status_of(rt, READER) is Status.UNSUBSCRIBED

    with rt.sessions() as session:
        subscriber = store.find_by_email(session, READER)
        assert subscriber is not None and subscriber.confirmation_mailed_at is not None
    time.sleep(2)  # give any duplicate that was (wrongly) queued the time to arrive
    assert smtp.counts()[READER] == 1, worker.tail()


def test_a_lost_ring_is_recovered_by_the_sweeper(stack: tuple[Runtime, ChaparProcess],
                                                 smtp: SmtpRecorder) -> None:
    rt, worker = stack
    # The row is committed, but the broker never heard of it (an outage at that moment).
    with unit_of_work(rt.sessions) as session:
        outcome = store.subscribe(session, "lost@example.com", store.Consent("web:test"),
                                  utcnow() - timedelta(minutes=10))
    assert outcome.send_confirmation
    time.sleep(2)
    assert smtp.to("lost@example.com") == []

    # Beat would run this every minute; here the task body runs once, in this process.
    if rt.redis is not None:  # ids restart with each test: forget earlier tests' rings
        for key in rt.redis.scan_iter(match="chapar:confirmation-rung:*"):
            rt.redis.delete(key)
    sweep = rt.celery.tasks["chapar.sweep_confirmations"]
    tasks.reset_runtime()
    try:
        sweep.run()
    finally:
        tasks.reset_runtime()

    received = mail_to(smtp, "lost@example.com", worker)
    web = TestClient(create_app(rt), raise_server_exceptions=False)
    assert web.post(confirm_path(received)).status_code == 200
    assert status_of(rt, "lost@example.com") is Status.CONFIRMED
    with rt.sessions() as session:
        row = session.get(Subscriber, outcome.subscriber_id)
        assert row is not None and row.confirmation_mailed_at is not None
    # Mailed now: the next sweep has nothing to ring.
    tasks.reset_runtime()
    try:
        sweep.run()
    finally:
        tasks.reset_runtime()
    time.sleep(2)
    assert smtp.counts()["lost@example.com"] == 1
