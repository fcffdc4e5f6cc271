"""Driving the desk in tests: a client over https, the forms' CSRF tokens, signing in."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import Response

from service.runtime import Runtime
from service.web.app import create_app
from tests.staff.factories import PASSWORD

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def desk_client(rt: Runtime, app: FastAPI | None = None) -> TestClient:
    # Cookies are Secure outside development, so the client speaks https.
    return TestClient(app or create_app(rt), base_url="https://testserver", follow_redirects=False)


def csrf_from(page: Response) -> str:
    found = TOKEN.search(page.text)
    assert found, "the page has no csrf_token field"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD, code: str = "") -> Response:
    token = csrf_from(client.get("/desk/login"))
    return client.post("/desk/login", data={"email": email, "password": password, "totp": code,
                                            "csrf_token": token})


def desk_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under /desk, however the routers were included."""
    def walk(routes: list[object]) -> Iterator[APIRoute]:
        for route in routes:
            nested = getattr(route, "original_router", None)
            if nested is not None:
                yield from walk(list(nested.routes))
            elif isinstance(route, APIRoute):
                yield route
    for route in walk(list(app.routes)):
        if route.path.startswith("/desk"):
            for method in sorted(route.methods):
                yield method, route.path
