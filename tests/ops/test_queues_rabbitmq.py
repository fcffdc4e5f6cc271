"""Queue depths read from RabbitMQ, in a virtual host of this test's own."""

from __future__ import annotations

import socket
from pathlib import Path

from service.ops.queues import queue_depths
from service.runtime import Runtime
from tests.conftest import make_settings
from tests.support.rabbitmq import PrivateVhost


def test_queue_depths_are_read_from_rabbitmq_even_when_a_queue_was_never_declared(
        rabbitmq_vhost: PrivateVhost, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, broker_url=rabbitmq_vhost.url))
    try:
        # Nothing declared yet: every queue reads as empty, none as unreachable.
        assert queue_depths(rt.settings, rt.celery) == {"mail": 0, "send": 0, "default": 0}
        for _ in range(3):
            rt.ring("chapar.send_batch", 1)
        # "send" exists now; "mail", read before it, still does not (RabbitMQ closes the
        # channel on a passive declare of a missing queue).
        assert queue_depths(rt.settings, rt.celery) == {"mail": 0, "send": 3, "default": 0}
        rt.ring("chapar.send_confirmation", 7)
        assert queue_depths(rt.settings, rt.celery) == {"mail": 1, "send": 3, "default": 0}
    finally:
        rt.close()


def test_an_unreachable_rabbitmq_reads_as_unknown(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rt = Runtime.from_settings(make_settings(
        tmp_path, broker_url=f"amqp://guest:guest@127.0.0.1:{port}//"))
    try:
        assert queue_depths(rt.settings, rt.celery) == {"mail": None, "send": None, "default": None}
    finally:
        rt.close()
