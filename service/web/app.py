"""The ASGI app, built from a Runtime: `chapar serve` and the tests call create_app."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.runtime import Runtime
from service.web import archive, articles_api, bounces_api, desk, health, reader
from service.web.guards import LimitBodySize
from service.web.limits import SubscribeLimits
from service.web.pages import error

log = logging.getLogger(__name__)


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(title="Chapar", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.runtime = rt
    app.state.limits = SubscribeLimits(rt.settings)
    app.include_router(reader.router)
    app.include_router(health.router)
    app.include_router(bounces_api.router)
    app.include_router(articles_api.router)
    app.include_router(archive.router)
    desk.install(app)  # the staff desk at /desk/ and its /static/ files
    app.add_middleware(LimitBodySize, max_bytes=rt.settings.max_request_bytes,
                       api_max_bytes=rt.settings.api_max_request_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code if exc.status_code in (404, 405, 413) else 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 422, code="validation_error")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(request, 500)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        # Pages that set their own frame-ancestors (the embeddable form and its answers)
        # may be framed by the news site; every other page may not.
        if "frame-ancestors" not in response.headers.get("content-security-policy", ""):
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app
