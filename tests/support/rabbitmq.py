"""RabbitMQ for tests: a private virtual host on the machine's server, made and removed per use.

The server on 127.0.0.1:5672 is shared with other test runs, so a test never touches
anything outside its own vhost. `.ci/run` starts RabbitMQ: a test that needs it fails
when it cannot be reached, unless CHAPAR_TEST_SKIP_RABBITMQ=1 says to skip instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid

import pytest
from kombu import Connection

from service.ops.queues import QUEUES

RABBITMQ = ("127.0.0.1", 5672)
USER = "guest"
# Where tasks wait: Chapar's queues, and the delay levels of kombu's native delayed delivery.
TASK_QUEUES = (*QUEUES, *(f"celery_delayed_{level}" for level in range(28)))
SKIP_VARIABLE = "CHAPAR_TEST_SKIP_RABBITMQ"


def rabbitmq_problem() -> str | None:
    """Why the tests cannot use RabbitMQ here, or None when they can."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError:
        return "RabbitMQ is not running on 127.0.0.1:5672"
    return None


def require_rabbitmq() -> None:
    """Fail (or skip, when the opt-out variable is set) if RabbitMQ cannot be used."""
    problem = rabbitmq_problem()
    if problem is None:
        return
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{problem} ({SKIP_VARIABLE}=1)")
    pytest.fail(f"{problem}: .ci/run starts it; set {SKIP_VARIABLE}=1 to skip these tests",
                pytrace=False)


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                            text=True, timeout=60)
    return result.stdout


class PrivateVhost:
    """A virtual host of this test's own: its queues may be deleted, its clients cut off."""

    def __init__(self) -> None:
        self.name = f"chapar-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._outage: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{USER}@{RABBITMQ[0]}:{RABBITMQ[1]}/{self.name}"

    def create(self) -> PrivateVhost:
        rabbitmqctl("add_vhost", self.name)
        self.allow()
        return self

    def delete(self) -> None:
        for command in self._outage:
            command.wait(60)
        rabbitmqctl("delete_vhost", self.name)

    def allow(self) -> None:
        rabbitmqctl("set_permissions", "-p", self.name, USER, ".*", ".*", ".*")

    def delete_queues(self) -> None:
        """Chapar's queues and Celery's delayed-delivery queues gone, with every message in them.

        Over AMQP, by name, in a few milliseconds (rabbitmqctl takes a third of a second per
        call, and a chaos test must strike while the send is still going). The queues left
        are exclusive or auto-deleted ones of a connection (remote control, events): they
        carry no tasks.
        """
        with Connection(self.url, connect_timeout=10) as connection:
            channel = connection.default_channel
            for name in TASK_QUEUES:
                channel.queue_delete(name)  # type: ignore[attr-defined]

    # The chaos tests' broker interface (tests/delivery/test_chaos.py), as PrivateRedis has it.
    def flushall(self) -> None:
        """Lose every queued message."""
        self.delete_queues()

    def stop(self) -> None:
        """The broker goes down and comes back empty: queues lost, our user refused, every
        connection of the vhost cut. The last two are under way when this returns (each
        rabbitmqctl call is slow); start() waits for them before letting the user in again.
        """
        self.delete_queues()
        self._outage = [
            subprocess.Popen(["rabbitmqctl", "-q", *args], stdout=subprocess.DEVNULL)
            for args in (("clear_permissions", "-p", self.name, USER),
                         ("close_all_connections", "-p", self.name, "chapar test: outage"))
        ]

    def start(self) -> PrivateVhost:
        for command in self._outage:
            assert command.wait(60) == 0, "rabbitmqctl failed"
        self._outage = []
        self.allow()
        return self
