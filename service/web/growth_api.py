"""GET /api/v1/growth: the list's weekly growth, as the desk's growth page and the CLI show it.

The caller proves itself with the API key like the other /api/v1 routes; the
figures come from service.subscribers.growth.weekly_growth.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.clock import utcnow
from service.runtime import Runtime
from service.subscribers.growth import DEFAULT_WEEKS, MAX_WEEKS, weekly_growth
from service.web.api_keys import key_refusal

router = APIRouter()


@router.get("/api/v1/growth")
def growth(request: Request, weeks: int = DEFAULT_WEEKS) -> JSONResponse:
    """Subscriptions, imports, confirmations, unsubscribes and the confirmation rate per week
    (Saturday to Friday in CHAPAR_TIMEZONE), oldest first; the last week is the current one."""
    rt: Runtime = request.app.state.runtime
    refused = key_refusal(request, rt)
    if refused is not None:
        return refused
    if not 1 <= weeks <= MAX_WEEKS:
        return JSONResponse({"error": "invalid", "message": f"weeks must be 1 to {MAX_WEEKS}"},
                            status_code=422)
    with rt.sessions() as session:
        figures = weekly_growth(session, utcnow(), rt.settings.tz, weeks)
    return JSONResponse(figures.as_dict())
