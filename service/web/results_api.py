"""GET /api/v1/issues/<number>/stats: one issue's results, as the desk and the CLI show them.

The caller proves itself with the API key like the other /api/v1 routes; the
figures come from service.digests.results.issue_results.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.digests import results
from service.digests.clicks import counting
from service.runtime import Runtime
from service.web.api_keys import key_refusal

router = APIRouter()


@router.get("/api/v1/issues/{number}/stats")
def issue_stats(request: Request, number: int) -> JSONResponse:
    """Sent, deferred, failed, bounced, complaints, unsubscribes and (when counted) clicks."""
    rt: Runtime = request.app.state.runtime
    refused = key_refusal(request, rt)
    if refused is not None:
        return refused
    with rt.sessions() as session:
        issue = results.issue_by_number(session, number)
        if issue is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        figures = results.issue_results(session, issue,
                                        counting_clicks=counting(rt.settings.track_clicks))
    return JSONResponse(figures.as_dict())
