"""The Celery app. `celery -A worker.app` and `chapar worker` load it from here."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu import Exchange, Queue

from service.settings import Settings

QUEUES = ("mail", "send", "default")


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    if url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    if settings.broker_kind == "redis":
        # Longer than any task runs; a message whose worker died comes back after it.
        # The ledger, not the broker, decides what is sent, so a redelivery is harmless.
        return {"visibility_timeout": 3600}
    if settings.broker_kind == "amqp":
        # Publisher confirms: a ring returns once RabbitMQ has the message, or raises.
        return {"confirm_publish": True}
    return {}


def task_queues(settings: Settings) -> tuple[Queue, ...] | None:
    """RabbitMQ: a quorum queue per Chapar queue; other brokers: Celery's own queues.

    Quorum queues are replicated in a cluster and take no global QoS, which Celery
    detects (worker_detect_quorum_queues): each worker then prefetches a fixed
    concurrency x worker_prefetch_multiplier. Topic exchanges, not direct: a task
    retried with a countdown (the confirmation email's) goes through RabbitMQ's
    native delayed delivery instead of waiting in a worker's memory.
    """
    if settings.broker_kind != "amqp":
        return None
    return tuple(
        Queue(name, Exchange(name, type="topic"), routing_key=name,
              queue_arguments={"x-queue-type": "quorum"})
        for name in QUEUES
    )


def create_celery(settings: Settings) -> Celery:
    app = Celery("chapar", broker=settings.effective_broker_url, include=["worker.tasks"])
    app.conf.update(
        broker_transport_options=broker_options(settings),
        task_queues=task_queues(settings),
        worker_detect_quorum_queues=True,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        # A doorbell is acknowledged after its task ran, and one whose worker died is
        # delivered again; a worker holds no more doorbells than it has pool processes.
        # A doubled ring is harmless: the ledger's claims decide what is sent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_routes={
            "chapar.send_confirmation": {"queue": "mail"},
            "chapar.send_batch": {"queue": "send"},
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule=beat_schedule(settings),
    )
    app.chapar_settings = settings  # type: ignore[attr-defined]
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "sweep-confirmations": {
            "task": "chapar.sweep_confirmations", "schedule": timedelta(minutes=1),
        },
        "sweep-deliveries": {
            "task": "chapar.sweep_deliveries",
            "schedule": timedelta(seconds=settings.beat_tick_seconds),
        },
        # Often, and cheap: a dead worker's rows are sent again soon after its lease ends.
        "recover-leases": {
            "task": "chapar.recover_leases",
            "schedule": timedelta(seconds=settings.lease_check_seconds),
        },
        "sweep-imports": {
            "task": "chapar.sweep_imports", "schedule": timedelta(minutes=1),
        },
        "schedule-tick": {
            "task": "chapar.schedule_tick",
            "schedule": timedelta(seconds=settings.beat_tick_seconds),
        },
    } | bounce_polling(settings) | feed_refresh(settings)


def bounce_polling(settings: Settings) -> dict[str, dict[str, Any]]:
    """Poll the bounce mailbox only when one is configured."""
    if not settings.bounce_mailbox_url:
        return {}
    return {
        "poll-bounces": {
            "task": "chapar.poll_bounces",
            "schedule": timedelta(seconds=settings.bounce_poll_seconds),
        },
    }


def feed_refresh(settings: Settings) -> dict[str, dict[str, Any]]:
    """Refresh the site's feed on a schedule only when one is configured."""
    if not settings.feed_url:
        return {}
    return {
        "refresh-feeds": {
            "task": "chapar.refresh_feeds",
            "schedule": timedelta(minutes=settings.feed_refresh_minutes),
        },
    }


# The modules a send imports when it first needs them.
SEND_PATH = ("service.delivery.sender", "service.ops.incidents", "service.ops.metrics",
             "service.ops.writers", "service.web.logs")


@worker_init.connect
def _import_the_send_path(**_: Any) -> None:
    # Once, in the main process before the pool forks, rather than in every pool process
    # at its first send (0.16 s each, while the rows it claimed wait).
    for name in SEND_PATH:
        importlib.import_module(name)


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # Database connections must not cross a fork.
    from worker import tasks

    tasks.reset_runtime()


_heartbeat: Any = None


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    # The main process says it is alive every few seconds; the ops console calls a
    # worker whose heartbeat stopped without a clean shutdown lost.
    global _heartbeat
    from sqlalchemy.pool import NullPool

    from service.ops.workers import Heartbeat
    from service.runtime import Runtime

    controller = getattr(sender, "controller", None)
    pool = int(getattr(controller, "concurrency", 0) or 1)
    name = str(getattr(sender, "hostname", "") or "worker")
    # No pooled connection is kept open in this process: the pool processes Celery forks
    # from it later (replacing one that died) must not inherit a live database socket.
    rt = Runtime.from_settings(sender.app.chapar_settings, poolclass=NullPool)
    _heartbeat = Heartbeat(rt, name, pool).start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


@beat_init.connect
def _start_ops_watch(sender: Any = None, **_: Any) -> None:
    # In beat, not in a task: the alert that no worker is alive must not need a worker.
    from service.ops.alerts import Watcher
    from service.runtime import Runtime

    Watcher(Runtime.from_settings(sender.app.chapar_settings)).start()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _quit_smtp_sessions(**_: Any) -> None:
    # Say QUIT rather than drop the socket: pool processes get worker_process_shutdown,
    # the solo pool (the main process sends) gets worker_shutdown.
    from service.delivery.sender import close_connections

    close_connections()


app = create_celery(Settings())
