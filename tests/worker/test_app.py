"""The Celery app on each broker: RabbitMQ gets quorum queues and publisher confirms.

The end-to-end test runs a real worker process on RabbitMQ (a virtual host of its own)
that delivers an issue to the SMTP recorder, then a confirmation email sent with a
countdown, as a retry is, through RabbitMQ's native delayed delivery; and beat on
RabbitMQ, whose sweeper rings for a send nobody rang for.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import control, ledger
from service.digests.models import Issue, IssueStatus
from service.ops.queues import queue_depths
from service.runtime import Runtime
from service.subscribers import store
from tests.conftest import emptied_runtime, make_settings
from tests.delivery.factories import add_subscribers, make_issue
from tests.support.processes import ChaparProcess, start_worker
from tests.support.rabbitmq import PrivateVhost, rabbitmqctl
from tests.support.smtp import SmtpRecorder
from worker.app import QUEUES, create_celery

REPO = Path(__file__).resolve().parents[2]


def test_rabbitmq_gets_quorum_queues_on_topic_exchanges_and_publisher_confirms(
        tmp_path: Path) -> None:
    conf = create_celery(make_settings(tmp_path, broker_url="amqp://u:p@rabbit:5672/chapar")).conf
    queues = {queue.name: queue for queue in conf.task_queues}
    assert sorted(queues) == sorted(QUEUES)
    for name, queue in queues.items():
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.exchange.name == name and queue.exchange.type == "topic"
        assert queue.routing_key == name and queue.durable
    assert conf.broker_transport_options == {"confirm_publish": True}
    assert conf.worker_detect_quorum_queues
    # The doorbell design: acknowledged after the task ran, one message per pool process.
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1


def test_redis_and_the_filesystem_broker_keep_celerys_own_queues(tmp_path: Path) -> None:
    redis = create_celery(make_settings(tmp_path, broker_url="redis://127.0.0.1:6379/3")).conf
    assert redis.task_queues is None
    assert redis.broker_transport_options == {"visibility_timeout": 3600}
    embedded = create_celery(make_settings(tmp_path)).conf
    assert embedded.task_queues is None
    assert "data_folder_in" in embedded.broker_transport_options


def queue_types(vhost: PrivateVhost) -> dict[str, str]:
    out = rabbitmqctl("list_queues", "-p", vhost.name, "--no-table-headers", "name", "type")
    return dict(line.split() for line in out.splitlines() if line.strip())


DELAYED = [f"celery_delayed_{level}" for level in range(28)]  # kombu's delay levels


def waiting_messages(rt: Runtime, queues: list[str]) -> int:
    """Messages ready in these queues, as RabbitMQ counts them now (list_queues may lag)."""
    total = 0
    with rt.celery.connection_for_read() as connection:
        for queue in queues:
            with connection.channel() as channel:
                declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                total += int(declared.message_count)
    return total


def wait_for_status(rt: Runtime, issue_id: int, status: IssueStatus, worker: ChaparProcess) -> None:
    deadline = time.monotonic() + 60
    while True:
        with rt.sessions() as session:
            if session.scalar(select(Issue.status).where(Issue.id == issue_id)) is status:
                return
        assert time.monotonic() < deadline, f"issue not {status}:\n{worker.tail()}"
        time.sleep(0.2)


def test_a_real_worker_on_rabbitmq_delivers_an_issue_and_a_delayed_confirmation(
        postgresql_url: str, redis_db: str, rabbitmq_vhost: PrivateVhost, smtp: SmtpRecorder,
        tmp_path: Path) -> None:
    with emptied_runtime(tmp_path, database_url=postgresql_url, broker_url=rabbitmq_vhost.url,
                         redis_url=redis_db, smtp_url=smtp.url, send_batch_size=50) as rt:
        with unit_of_work(rt.sessions) as session:
            emails = add_subscribers(session, 120)
            issue_id = make_issue(session).id
        assert control.start_and_ring(rt, issue_id, utcnow()) == 120
        # The doorbells wait in RabbitMQ's quorum queue until a worker comes.
        assert queue_depths(rt.settings, rt.celery)["send"] == 3
        assert queue_types(rabbitmq_vhost)["send"] == "quorum"
        worker = start_worker(rt.settings, concurrency=2)
        try:
            wait_for_status(rt, issue_id, IssueStatus.SENT, worker)
            assert smtp.counts() == Counter({email: 1 for email in emails})

            # A task retried with a countdown (as the confirmation email is, after a
            # connection error) waits in RabbitMQ's delayed-delivery queues, not in a
            # worker's memory, then arrives.
            with unit_of_work(rt.sessions) as session:
                reader = store.subscribe(session, "later@example.com",
                                         store.Consent("web:test"), utcnow()).subscriber_id
            rt.celery.send_task("chapar.send_confirmation", args=[reader], countdown=20)
            assert waiting_messages(rt, DELAYED) == 1
            assert waiting_messages(rt, ["mail"]) == 0
            smtp.wait_for(lambda messages: any("later@example.com" in m.rcpt_tos
                                               for m in messages), timeout=60)
        finally:
            worker.stop()
    assert "Global QoS is disabled" in "".join(worker.output), worker.tail()


def test_beat_on_rabbitmq_rings_for_a_send_whose_doorbell_was_never_rung(
        postgresql_url: str, redis_db: str, rabbitmq_vhost: PrivateVhost, smtp: SmtpRecorder,
        tmp_path: Path) -> None:
    with emptied_runtime(tmp_path, database_url=postgresql_url, broker_url=rabbitmq_vhost.url,
                         redis_url=redis_db, smtp_url=smtp.url, beat_tick_seconds=1) as rt:
        with unit_of_work(rt.sessions) as session:
            emails = add_subscribers(session, 40)
            issue_id = make_issue(session).id
            # Fanned out and committed, but the ring was lost: only the sweeper knows.
            ledger.start_send(session, issue_id, utcnow(), timedelta(hours=1))
        worker = start_worker(rt.settings, concurrency=1)
        beat = ChaparProcess(rt.settings, ["beat", "--schedule-file", str(tmp_path / "beat.db")],
                             ready_marker="beat: Starting", name="beat").start()
        try:
            wait_for_status(rt, issue_id, IssueStatus.SENT, worker)
        finally:
            beat.stop()
            worker.stop()
    assert smtp.counts() == Counter({email: 1 for email in emails})


def late_imports(path: Path) -> set[str]:
    """The service modules a file imports inside its functions, by their full names."""
    found = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service"):
                found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return found


def test_the_main_process_imports_what_a_send_imports_late_before_the_pool_forks() -> None:
    # Each pool process would otherwise import them at its first send (0.16 s), with its
    # claimed rows waiting; Celery sends worker_init in the main process before forking.
    script = ("import sys, worker.app; from celery.signals import worker_init; "
              "worker_init.send(sender=None); print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.split())
    late = late_imports(REPO / "service" / "delivery" / "sender.py")
    assert {"service.ops.metrics", "service.web.logs"} <= late  # the parse finds them
    assert {_module(name) for name in late} - loaded == set()


def _module(name: str) -> str:
    """The module `name` is, or the one it is a name in (service.ops.metrics.SendTally)."""
    try:
        return name if importlib.util.find_spec(name) is not None else name.rpartition(".")[0]
    except ModuleNotFoundError:  # its parent is a module, not a package
        return name.rpartition(".")[0]
