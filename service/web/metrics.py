"""GET /metrics: Prometheus text, every figure read from the database and broker at scrape time.

With CHAPAR_METRICS_TOKEN set, a scrape needs `Authorization: Bearer <token>`. Unset,
only a client on this host may scrape, and a request a proxy forwarded (it carries
X-Forwarded-For) is not local however it arrived.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from service.ops.metrics import ChaparCollector
from service.runtime import Runtime

router = APIRouter(include_in_schema=False)


def allowed(request: Request, token: str) -> bool:
    if token:
        presented = request.headers.get("authorization", "")
        return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())
    if request.headers.get("x-forwarded-for") or request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def scrape(rt: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChaparCollector(rt))
    return generate_latest(registry)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    if not allowed(request, rt.settings.metrics_token):
        return PlainTextResponse("forbidden\n", status_code=403,
                                 headers={"WWW-Authenticate": "Bearer"})
    body = await run_in_threadpool(scrape, rt)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
