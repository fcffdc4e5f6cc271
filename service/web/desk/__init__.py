"""The staff desk at /desk/: one router per area, all behind the guard in access.py."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.staff.login import LoginThrottle
from service.web.desk import (
    apidocs,
    auth,
    checks,
    editing,
    growth,
    home,
    imports,
    issues,
    ops,
    readers,
    results,
    schedule,
    staff,
)
from service.web.desk.access import NeedLogin, NeedTotp, Refused, route_key
from service.web.desk.view import desk_page

STATIC = Path(__file__).resolve().parent.parent / "static"


def install(app: FastAPI) -> None:
    """Add the desk's routes, its answers for refused requests, and /static/."""
    app.state.login_throttle = LoginThrottle(app.state.runtime.settings)
    for area in (auth, home, issues, editing, checks, results, readers, growth, imports, schedule,
                 ops, staff, apidocs):
        app.include_router(area.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        method, _ = route_key(request)
        target = f"/desk/login?next={request.url.path}" if method == "GET" else "/desk/login"
        return redirect(request, target)

    @app.exception_handler(NeedTotp)
    async def need_totp(request: Request, exc: NeedTotp) -> Response:
        return redirect(request, "/desk/account/totp")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return desk_page(request, "error.html", getattr(request.state, "viewer", None), status_code=403,
                         heading=exc.heading, message=exc.message)


def redirect(request: Request, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    if request.headers.get("hx-request"):
        response.headers["HX-Redirect"] = target  # htmx would otherwise swap the login page in
    return response
