"""POST /api/v1/bounces: an MTA or a mail-hook service hands us one raw report.

The body is the report exactly as received (message/rfc822). The caller proves
itself with the API key, as `Authorization: Bearer <key>` or `X-API-Key`, compared
in constant time. The body size is capped by the app's request limit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.bounces.inbox import receive_report
from service.bounces.intake import Intake
from service.clock import utcnow
from service.runtime import Runtime
from service.web.api_keys import key_refusal
from service.web.openapi import raw_body

router = APIRouter()


@router.post("/api/v1/bounces", status_code=202, responses={202: {"model": Intake}},
             openapi_extra=raw_body("message/rfc822", "One bounce or complaint report, "
                                    "exactly as received (a whole email message)."))
async def post_bounce(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    refused = key_refusal(request, rt)
    if refused is not None:
        return refused
    raw = await request.body()
    if not raw.strip():
        return JSONResponse({"error": "empty_body"}, status_code=400)
    intake = await run_in_threadpool(receive_report, rt, raw, utcnow(), "api")
    return JSONResponse(
        {
            "outcome": intake.outcome,
            "delivery_id": intake.delivery_id,
            "subscriber_id": intake.subscriber_id,
            "subscriber_status": intake.subscriber_status,
            "stored": intake.stored,
        },
        status_code=202,
    )
