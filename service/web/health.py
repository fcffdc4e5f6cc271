"""/healthz: the process answers. /readyz: the database and the broker answer too."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.db import UNAVAILABLE
from service.runtime import Runtime
from service.web.pages import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def check_database(rt: Runtime) -> bool:
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except UNAVAILABLE as exc:
        # Probed every few seconds: one warning per outage (the tracker's), not a traceback each.
        rt.database_outages.failed(exc)
        return False
    except Exception:
        # The driver's words can name hosts and users: they go to the log, not the page.
        log.exception("readiness: database unreachable")
        return False
    return True


def check_broker(rt: Runtime) -> bool:
    try:
        with rt.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        log.exception("readiness: broker unreachable")
        return False
    return True


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    problems = {
        name: "unavailable"
        for name, ok in (
            ("database", await run_in_threadpool(check_database, rt)),
            ("broker", await run_in_threadpool(check_broker, rt)),
        )
        if not ok
    }
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return JSONResponse({"status": "ready"})
