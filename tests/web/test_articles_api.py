"""POST /api/v1/articles over HTTP: key, validation with the field at fault, upsert."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.articles.clean import shorten_summary
from service.articles.ingest import parse_feed
from service.articles.models import Article
from service.runtime import Runtime
from service.web.app import create_app
from tests.digests.factories import LONG_SUMMARY

KEY = {"Authorization": "Bearer test-api-key"}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def articles(rt: Runtime) -> list[Article]:
    with rt.sessions() as session:
        return list(session.scalars(select(Article).order_by(Article.id)))


def item(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "guid": "cms-1", "url": "https://news.example.com/a/1?utm_source=cms",
        "title": "عنوان\r\nX-Injected: yes خبر ويژه", "summary": "<p>متن <script>x()</script><b>مهم</b></p>",
        "section": "اقتصاد", "author": "علی", "published_at": "2026-11-26T10:00:00+03:30",
    }
    return data | overrides


def test_batch_is_upserted_and_cleaned(client: TestClient, runtime: Runtime) -> None:
    batch = {"articles": [item(), item(guid="cms-2", url="https://news.example.com/a/2")]}
    response = client.post("/api/v1/articles", json=batch, headers=KEY)
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 2, "updated": 0, "unchanged": 0}
    first = articles(runtime)[0]
    assert first.title == "عنوان X-Injected: yes خبر ویژه"
    assert first.url == "https://news.example.com/a/1"
    assert "script" not in first.summary_html and "<b>مهم</b>" in first.summary_html
    assert first.source == "api" and first.published_at.isoformat() == "2026-11-26T06:30:00+00:00"

    again = client.post("/api/v1/articles", headers={"X-API-Key": "test-api-key"},
                        json={"articles": [item(guid=None, title="عنوان تازه")]})
    assert again.json() == {"added": 0, "updated": 1, "unchanged": 0}  # same URL: merged
    assert [a.title for a in articles(runtime)] == ["عنوان تازه", "عنوان X-Injected: yes خبر ویژه"]


@pytest.mark.parametrize(("payload", "loc"), [
    ({"articles": [item(url="javascript:alert(1)")]}, ["articles", 0, "url"]),
    ({"articles": [item(), item(title="   ")]}, ["articles", 1, "title"]),
    ({"articles": [item(published_at="2026-11-26T10:00:00")]}, ["articles", 0, "published_at"]),
    ({"articles": [item(published_at="not a date")]}, ["articles", 0, "published_at"]),
    # Ends of the calendar: converting them to UTC overflowed (a 500) before.
    ({"articles": [item(published_at="0001-01-01T00:00:00+03:30")]}, ["articles", 0, "published_at"]),
    ({"articles": [item(published_at="9999-12-31T23:00:00-05:00")]}, ["articles", 0, "published_at"]),
    ({"articles": [item(published_at="9999-06-01T00:00:00+00:00")]}, ["articles", 0, "published_at"]),
    ({"articles": [{"title": "بی نشانی"}]}, ["articles", 0, "url"]),
    ({"articles": []}, ["articles"]),
    ({"items": []}, ["articles"]),
])
def test_validation_errors_name_the_field(client: TestClient, runtime: Runtime,
                                          payload: dict[str, Any], loc: list[object]) -> None:
    response = client.post("/api/v1/articles", json=payload, headers=KEY)
    assert response.status_code == 422
    assert loc in [e["loc"] for e in response.json()["errors"]]
    assert articles(runtime) == []  # nothing of a bad batch is stored


def test_malformed_json_is_a_422_too(client: TestClient) -> None:
    response = client.post("/api/v1/articles", content=b"{not json",
                           headers=KEY | {"content-type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": ""}])
def test_the_api_key_is_required(client: TestClient, runtime: Runtime, headers: dict[str, str]) -> None:
    response = client.post("/api/v1/articles", json={"articles": [item()]}, headers=headers)
    assert response.status_code == 401
    assert articles(runtime) == []


def test_a_long_summary_is_stored_and_shortened_as_the_feed_path_does(client: TestClient,
                                                                      runtime: Runtime) -> None:
    """The CMS API and the feed clean a summary alike, and the digest shortens both alike."""
    summary = "<p>" + LONG_SUMMARY * 7 + "</p>"
    assert len(summary) > 1400
    response = client.post("/api/v1/articles", headers=KEY,
                           json={"articles": [item(summary=summary)]})
    assert response.status_code == 200, response.text
    from_api = articles(runtime)[0].summary_html
    feed = RSS_ONE_ITEM.format(summary=html.escape(summary))
    from_feed = parse_feed(feed, "https://news.example.com/feed.xml")[0].summary_html
    assert from_api == from_feed
    teaser = shorten_summary(from_api, runtime.settings.digest_summary_chars)
    assert 200 <= len(teaser) <= 280 and teaser.endswith("…")


RSS_ONE_ITEM = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>t</title><link>https://news.example.com/</link>
<item><title>t</title><link>https://news.example.com/a/1</link><guid>g</guid>
<description>{summary}</description></item></channel></rss>"""
