"""Queue depths read from RabbitMQ, in a virtual host of this test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.ops.queues import queue_depths
from service.runtime import Runtime
from tests.conftest import make_settings

RABBITMQ = ("127.0.0.1", 5672)


def rabbitmq_answers() -> bool:
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError:
        return False
    return shutil.which("rabbitmqctl") is not None


pytestmark = pytest.mark.skipif(not rabbitmq_answers(),
                                reason="RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"chapar-test-{os.getpid()}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
                   check=True)
    yield name
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=True)


def test_queue_depths_are_read_from_rabbitmq_even_when_a_queue_was_never_declared(
        vhost: str, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(
        tmp_path, broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}"))
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
