"""The body-size guard's second limit: paths under /api/ may carry CMS batches and bounces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.articles.models import Article
from service.runtime import Runtime
from service.web.app import create_app
from tests.bounces.messages import hard_bounce

KEY = {"Authorization": "Bearer test-api-key"}  # tests/conftest.make_settings
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def article_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Article)) or 0


def batch(count: int, summary_chars: int) -> dict[str, Any]:
    return {"articles": [
        {"guid": f"big-{n}", "url": f"https://news.example.com/a/{n}", "title": f"خبر شماره {n}",
         "summary": "<p>" + "متن خبر " * (summary_chars // 8) + "</p>",
         "published_at": "2026-11-26T10:00:00+03:30"}
        for n in range(count)
    ]}


def test_a_megabyte_article_batch_passes_where_a_100_kb_form_does_not(
        client: TestClient, runtime: Runtime) -> None:
    settings = runtime.settings
    assert (settings.max_request_bytes, settings.api_max_request_bytes) == (64 * 1024, 5 * 1024 * 1024)
    body = batch(100, 6_000)
    response = client.post("/api/v1/articles", json=body, headers=KEY)
    assert len(response.request.content) > 1_000_000
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 100, "updated": 0, "unchanged": 0}
    assert article_count(runtime) == 100

    form = b"email=big%40example.com&source=" + b"x" * 100_000
    refused = client.post("/subscribe", content=form, headers=FORM)
    assert refused.status_code == 413 and "بزرگ" in refused.text


def test_a_bounce_report_over_the_page_limit_is_taken(client: TestClient, runtime: Runtime) -> None:
    """A report quoting the whole issue (~100 KB) is no longer cut off by the 64 KB page limit."""
    raw = hard_bounce("bounces+1-x@chapar.test", "a@example.test") + b"x" * 100_000
    response = client.post("/api/v1/bounces", content=raw,
                           headers={"Content-Type": "message/rfc822", "X-API-Key": "test-api-key"})
    assert response.status_code == 202, response.text


def test_an_api_body_over_the_api_limit_is_413_declared_or_streamed(
        client: TestClient, runtime: Runtime) -> None:
    limit = runtime.settings.api_max_request_bytes
    declared = client.post("/api/v1/articles", content=b"{" + b" " * limit + b"}",
                           headers=KEY | {"content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["error"] == "request_too_large"

    def pieces() -> Iterator[bytes]:
        yield b'{"articles": ['
        for _ in range(limit // (64 * 1024) + 1):
            yield b" " * (64 * 1024)

    streamed = client.post("/api/v1/articles", content=pieces(),
                           headers=KEY | {"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert article_count(runtime) == 0
