"""`chapar serve` as people run it: a real uvicorn process, its logs, raw connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.tokens import Purpose
from tests.conftest import emptied_runtime
from tests.subscribers.factories import confirm_token
from tests.support.network import free_port
from tests.support.processes import ChaparProcess

GONE = "client went away"


@pytest.fixture(scope="module")
def served(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[str, Runtime, ChaparProcess]]:
    """`chapar serve` on a free port, the per-client limit at three a minute."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with emptied_runtime(tmp_path_factory.mktemp("served"), database_url=sqlite_url,
                         public_url=base, subscribe_rate_per_client="3/minute") as rt:
        server = ChaparProcess(rt.settings, ["serve", "--port", str(port)],
                               ready_marker="Application startup complete", name="web").start()
        try:
            yield base, rt, server
        finally:
            server.stop()


def lines_after(server: ChaparProcess, start: int, count: int, *markers: str,
                timeout: float = 15.0) -> list[str]:
    """The server's output from line `start` on, once `count` of its lines hold a marker."""
    deadline = time.monotonic() + timeout
    while sum(any(m in line for m in markers) for line in server.output[start:]) < count:
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.05)
    return server.output[start:]


def test_forwarded_for_is_ignored_when_no_proxy_is_trusted(
        served: tuple[str, Runtime, ChaparProcess]) -> None:
    base, _, _ = served
    statuses = [httpx.post(f"{base}/subscribe", data={"email": f"x{i}@example.com"},
                           headers={"x-forwarded-for": f"203.0.113.{i}"}).status_code
                for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # a rotated header earns no new bucket


def test_tokens_never_reach_the_logs(served: tuple[str, Runtime, ChaparProcess]) -> None:
    base, rt, server = served
    start = len(server.output)
    with unit_of_work(rt.sessions) as session:
        subscriber = store.subscribe(session, "logs@example.com", store.Consent(source="test"),
                                     utcnow()).subscriber_id
    tokens = [confirm_token(rt, subscriber),
              rt.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber),
              rt.tokens.lasting(Purpose.PREFERENCES, subscriber)]
    paths = [f"/confirm/{tokens[0]}", f"/unsubscribe/{tokens[1]}", f"/preferences/{tokens[2]}",
             f"/preferences/{tokens[2]}/export.json", f"/unsubscribe/{tokens[1]}x"]
    for path in paths:
        assert httpx.get(base + path).status_code in (200, 400), path
    assert httpx.head(f"{base}/confirm/{tokens[0]}").status_code == 200
    output = "".join(lines_after(server, start, len(paths) + 1, "/[token]"))
    assert "/confirm/[token]" in output and "/preferences/[token]/export.json" in output
    for token in tokens:
        assert token not in output and token.split(".")[-1] not in output


def disconnect_mid_body(base: str, path: str) -> None:
    """Send the headers and part of the body a Content-Length promises, then hang up."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n"
                           "Content-Length: 1000\r\n\r\nconfirm=y".encode())
        time.sleep(0.3)  # the app is reading the body by now


def test_a_client_gone_mid_body_is_one_line_without_its_token(
        served: tuple[str, Runtime, ChaparProcess]) -> None:
    base, rt, server = served
    start = len(server.output)
    token = rt.tokens.lasting(Purpose.PREFERENCES, 7)
    disconnect_mid_body(base, f"/preferences/{token}/erase")
    disconnect_mid_body(base, "/subscribe")
    lines_after(server, start, 2, "ERROR", GONE)
    time.sleep(0.5)  # whatever else those requests log
    output = "".join(server.output[start:])
    assert "ERROR" not in output and "Traceback" not in output, output
    gone = [line for line in server.output[start:] if GONE in line]
    assert len(gone) == 2, output
    assert "/preferences/[token]/erase" in gone[0] and token not in output
