"""`/r/<token>`: a tracked article link from a digest email (service/digests/click_counts.py).

Public like the reader pages, and answered fast: the token is checked, one click is
inserted, and the reader is sent on to the article. A HEAD gets the same redirect's
headers and is recorded as filtered. A token that is altered, or that names a URL
which is not that article's in that issue, gets an error page and no redirect.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from service.clock import utcnow
from service.db import unit_of_work
from service.digests.click_counts import ClickCounter, Visit
from service.digests.clicks import counting
from service.runtime import Runtime
from service.tokens import TokenError
from service.web.layers import HEAD_ASKED
from service.web.limits import ClickLimits
from service.web.pages import error

router = APIRouter()

INVALID = "این پیوند نامعتبر است. پیوند را کامل از ایمیل کپی کنید."
FOREIGN = "این پیوند به خبری از این خبرنامه نمی‌رسد، پس شما را به جایی نمی‌فرستیم."


@router.get("/r/{token}", include_in_schema=False)
def follow(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.runtime
    try:
        link = rt.tokens.read_click(token)
    except TokenError:
        return error(request, 400, INVALID, code="link_invalid")
    counter: ClickCounter = request.app.state.clicks
    limits: ClickLimits = request.app.state.click_limits
    visit = Visit(method="HEAD" if request.scope.get(HEAD_ASKED) else request.method,
                  user_agent=request.headers.get("user-agent", "")[:500],
                  client=request.client.host if request.client else "unknown")
    now = utcnow()
    mode = rt.settings.track_clicks
    count = counting(mode) and limits.allow_client(counter.client_key(visit, now))
    with unit_of_work(rt.sessions) as session:
        url = counter.follow(session, link, visit, mode, now, count=count)
    if url is None:
        return error(request, 404, FOREIGN, code="link_foreign")
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
