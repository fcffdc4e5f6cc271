"""The body-size guard: oversize bodies get the 413 error page, declared or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.subscribers.rings import rung

LIMIT = 2048


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url,
                                             max_request_bytes=LIMIT))
    truncate_all(rt)
    with TestClient(create_app(rt), raise_server_exceptions=False) as test_client:
        yield test_client
    truncate_all(rt)
    rt.close()


def chunks(total: int, size: int = 512) -> Iterator[bytes]:
    """A body sent in pieces with no Content-Length, as a streaming client would."""
    yield b"email=guard%40example.com&source="
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


def test_a_declared_oversize_body_is_refused_before_it_is_read(client: TestClient) -> None:
    body = b"email=guard%40example.com&source=" + b"x" * LIMIT
    response = client.post("/subscribe", content=body,
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413
    assert '<html lang="fa" dir="rtl">' in response.text and "بزرگ" in response.text


def test_a_streamed_oversize_body_is_refused_too(client: TestClient) -> None:
    response = client.post("/subscribe", content=chunks(LIMIT * 4),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    assert "بزرگ" in response.text


def test_json_clients_get_a_json_413(client: TestClient) -> None:
    response = client.post("/subscribe", content=b'{"email": "' + b"a" * LIMIT + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_a_malformed_content_length_is_a_bad_request(client: TestClient) -> None:
    response = client.post("/subscribe", content=b"email=a%40example.com",
                           headers={"content-type": "application/x-www-form-urlencoded",
                                    "content-length": "12abc"})
    assert response.status_code == 400


def test_a_body_within_the_limit_passes(client: TestClient) -> None:
    small = client.post("/subscribe", content=chunks(LIMIT // 4),
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert small.status_code == 200 and "یک قدم مانده است" in small.text
    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    assert len(rung(settings)) == 1
