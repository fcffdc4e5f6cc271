"""What every response carries, HEAD wherever GET, trusted proxies, the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.runtime import Runtime
from service.subscribers.store import find_by_email
from service.web.app import create_app
from tests.conftest import emptied_runtime, make_settings
from tests.web.headers import csp_directives

LIMIT = 2048


@pytest.fixture
def rt(sqlite_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with emptied_runtime(tmp_path, database_url=sqlite_url, max_request_bytes=LIMIT) as runtime:
        yield runtime


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[TestClient]:
    """The app on a database without tables: pages that read it fail with a 500."""
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/empty.db"))
    with TestClient(create_app(rt), raise_server_exceptions=False) as test_client:
        yield test_client
    rt.close()


def assert_secured(headers: Any, *, framable: bool = False) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    policy = csp_directives(headers)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and "unsafe-inline" not in policy["script-src"]
    assert policy["base-uri"] == "'none'"
    # Forms post to CHAPAR_PUBLIC_URL, which may be another name for this host.
    assert policy["form-action"].split() == ["'self'", "http://chapar.test"]
    if framable:
        assert policy["frame-ancestors"] == "*" and "x-frame-options" not in headers
    else:
        assert policy["frame-ancestors"] == "'none'" and headers["x-frame-options"] == "DENY"


def test_every_kind_of_answer_carries_the_security_headers(client: TestClient,
                                                           broken: TestClient) -> None:
    answers = {
        200: client.get("/"),
        404: client.get("/no-such-page"),
        405: client.post("/archive"),
        413: client.post("/subscribe", content=b"email=" + b"x" * LIMIT,
                         headers={"content-type": "application/x-www-form-urlencoded"}),
        422: client.post("/subscribe", json={"email": "not an address"}),
        500: broken.get("/archive"),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert_secured(response.headers)
    assert_secured(client.get("/embed").headers, framable=True)
    assert_secured(client.get("/api/openapi.json").headers)


def get_paths(app: FastAPI) -> list[str]:
    """Every GET route of the app, its parameters filled in."""
    paths = [route.path for route in iter_route_contexts(app.routes)
             if route.path and "GET" in (route.methods or ())]
    return [re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if m.group(1) == "number" else "x", path)
            for path in paths]


def test_head_is_answered_wherever_get_is(rt: Runtime) -> None:
    app = create_app(rt)
    client = TestClient(app, raise_server_exceptions=False)
    paths = get_paths(app)
    assert {"/", "/healthz", "/archive", "/archive/1", "/confirm/x", "/api/openapi.json"} <= set(paths)
    for path in paths:
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == got.status_code, path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path
        assert head.content == b"", path
        assert_secured(head.headers, framable=path == "/embed")
    assert client.head("/").status_code == 200
    assert client.head("/subscribe-nowhere").status_code == 404
    # Routes without GET still refuse HEAD, as they refuse GET.
    assert client.head("/api/v1/bounces").status_code == client.get("/api/v1/bounces").status_code


def subscribe_from(rt: Runtime, peer: str, forwarded_for: str | None, email: str) -> int:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    with TestClient(create_app(rt), client=(peer, 40000), raise_server_exceptions=False) as c:
        return c.post("/subscribe", data={"email": email}, headers=headers).status_code


@pytest.fixture
def proxied(sqlite_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with emptied_runtime(tmp_path, database_url=sqlite_url, subscribe_rate_per_client="2/minute",
                         trusted_proxies="10.0.0.0/8, 192.0.2.7") as runtime:
        yield runtime


def test_behind_a_trusted_proxy_each_reader_has_a_bucket_and_a_consent_address(
        proxied: Runtime) -> None:
    app = create_app(proxied)
    with TestClient(app, client=("10.1.2.3", 40000), raise_server_exceptions=False) as proxy:
        statuses = [proxy.post("/subscribe", data={"email": f"r{i}@example.com"},
                               headers={"x-forwarded-for": f"203.0.113.{i}"}).status_code
                    for i in range(6)]
        assert statuses == [200] * 6  # six readers, two requests allowed each
        assert [proxy.post("/subscribe", data={"email": f"again{i}@example.com"},
                           headers={"x-forwarded-for": "203.0.113.0"}).status_code
                for i in range(2)] == [200, 429]
    with proxied.sessions() as session:
        subscriber = find_by_email(session, "r3@example.com")
        assert subscriber is not None and subscriber.consent_ip == "203.0.113.3"


def test_forwarded_for_from_anyone_else_is_ignored(proxied: Runtime) -> None:
    app = create_app(proxied)
    with TestClient(app, client=("198.51.100.9", 40000), raise_server_exceptions=False) as stranger:
        statuses = [stranger.post("/subscribe", data={"email": f"s{i}@example.com"},
                                  headers={"x-forwarded-for": f"203.0.113.{i}"}).status_code
                    for i in range(3)]
    assert statuses == [200, 200, 429]
    with proxied.sessions() as session:
        subscriber = find_by_email(session, "s0@example.com")
        assert subscriber is not None and subscriber.consent_ip == "198.51.100.9"


def test_a_malformed_trusted_proxy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"proxy\.example"):
        make_settings(tmp_path, trusted_proxies="10.0.0.1, proxy.example")
    assert make_settings(tmp_path).trusted_proxies == ""
    assert make_settings(tmp_path, trusted_proxies=" * ").trusted_proxies == "*"


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_the_openapi_document_describes_the_request_bodies(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    refs = list(references(document))
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs)
    for ref in refs:
        resolve(document, ref)  # every reference leads somewhere a generator can follow

    body = document["paths"]["/api/v1/articles"]["post"]["requestBody"]
    assert body["required"] is True
    batch = resolve(document, body["content"]["application/json"]["schema"]["$ref"])
    assert batch["required"] == ["articles"] and batch["properties"]["articles"]["maxItems"] == 500
    article = resolve(document, batch["properties"]["articles"]["items"]["$ref"])
    assert set(article["required"]) == {"url", "title"}
    assert {"guid", "summary", "image_url", "section", "author", "published_at"} <= set(
        article["properties"])

    bounce = document["paths"]["/api/v1/bounces"]["post"]["requestBody"]
    assert bounce["required"] is True and "message/rfc822" in bounce["content"]
