"""/healthz: the process answers. /readyz: the database and the broker answer too."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.runtime import Runtime

router = APIRouter()


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def check_database(rt: Runtime) -> str | None:
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def check_broker(rt: Runtime) -> str | None:
    try:
        with rt.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    problems = {
        name: problem
        for name, problem in (
            ("database", await run_in_threadpool(check_database, rt)),
            ("broker", await run_in_threadpool(check_broker, rt)),
        )
        if problem
    }
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})
