"""The ASGI app, built from a Runtime: `chapar serve` and the tests call create_app."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.db import UNAVAILABLE
from service.db import unavailable as db_unavailable
from service.digests.click_counts import ClickCounter
from service.runtime import Runtime
from service.staff import passwords
from service.web import (
    archive,
    articles_api,
    bounces_api,
    clicks,
    desk,
    growth_api,
    health,
    metrics,
    reader,
    results_api,
)
from service.web.desk import imports
from service.web.guards import LimitBodySize
from service.web.layers import HeadAsGet, SecurityHeaders, content_security_policy
from service.web.limits import ClickLimits, SubscribeLimits
from service.web.openapi import request_schemas
from service.web.pages import error, unavailable

log = logging.getLogger(__name__)


class ChaparApp(FastAPI):
    """FastAPI with Chapar's outer layers around the whole stack, error pages included."""

    def __init__(self, rt: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state.runtime = rt

    def build_middleware_stack(self) -> ASGIApp:
        settings = self.state.runtime.settings
        stack: ASGIApp = HeadAsGet(super().build_middleware_stack())
        if settings.trusted_proxies:
            # The client address (rate limits, consent records, the access log) comes from
            # X-Forwarded-For only when the connection comes from one of these proxies.
            proxied = ProxyHeadersMiddleware(stack, trusted_hosts=settings.trusted_proxies)  # type: ignore[arg-type]
            stack = proxied  # type: ignore[assignment]
        return SecurityHeaders(stack, content_security_policy(settings.public_url))

    def openapi(self) -> dict[str, Any]:
        fresh = self.openapi_schema is None
        document = super().openapi()
        if fresh:  # request bodies the routes read themselves (see service.web.openapi)
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                request_schemas())
        return document


def create_app(rt: Runtime) -> FastAPI:
    app = ChaparApp(rt, title="Chapar", docs_url=None, redoc_url=None,
                    openapi_url="/api/openapi.json")
    app.state.limits = SubscribeLimits(rt.settings)
    app.state.clicks = ClickCounter(rt.settings.secret_key, rt.redis)
    app.state.click_limits = ClickLimits(rt.settings)
    passwords.prepare()
    outages = rt.database_outages  # follows the engine from now on: a connection means it is back
    app.include_router(reader.router)
    app.include_router(clicks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(bounces_api.router)
    app.include_router(articles_api.router)
    app.include_router(results_api.router)
    app.include_router(growth_api.router)
    app.include_router(archive.router)
    desk.install(app)  # the staff desk at /desk/ and its /static/ files
    app.add_middleware(LimitBodySize, max_bytes=rt.settings.max_request_bytes,
                       api_max_bytes=rt.settings.api_max_request_bytes,
                       uploads={imports.UPLOAD_PATH: imports.upload_limit(rt.settings)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code if exc.status_code in (404, 405, 413) else 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 422, code="validation_error")

    async def database_unreachable(request: Request, exc: Exception) -> Response:
        # The request's one transaction rolled back (or never began): nothing half-written.
        # One warning per outage, not a traceback per request.
        if not db_unavailable(exc):  # e.g. a missing table: a fault to fix, not to wait out
            return await unexpected(request, exc)
        outages.failed(exc)
        return unavailable(request)

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, database_unreachable)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody is left to read an answer; one line says what happened.
        log.info("client went away before sending the whole request: %s %s",
                 request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(request, 500)

    return app
