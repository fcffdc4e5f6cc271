"""The desk's home: who you are, where you may go, your sessions, what happened lately."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from service.clock import utcnow
from service.db import unit_of_work
from service.staff import accounts, audit, sessions
from service.staff.audit import Actor
from service.staff.permissions import ROLES, Permission
from service.web.desk.access import client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)


@router.get("/desk/")
def home(request: Request, totp: str = "") -> Response:
    viewer, rt = current_viewer(request), runtime(request)
    now = utcnow()
    with rt.sessions() as db:
        account = accounts.get(db, viewer.account_id)
        live = sessions.live(db, account, now, sessions.Lifetime.from_settings(rt.settings))
        entries = audit.recent(db, 10) if viewer.may(Permission.STAFF_MANAGE) else []
        return desk_page(request, "home.html", viewer, account=account, live=live, entries=entries,
                         permissions=sorted(ROLES[viewer.role]),
                         notice="رمز یک‌بارمصرف برای حساب شما فعال شد." if totp else None)


@router.post("/desk/sessions/{session_id}/revoke")
def revoke(request: Request, session_id: int) -> Response:
    """End one of your own sessions; ending this one signs you out."""
    viewer = current_viewer(request)
    with unit_of_work(runtime(request).sessions) as db:
        account = accounts.get(db, viewer.account_id)
        sessions.revoke(db, Actor.of(account, client_address(request)), account, session_id, utcnow())
    if session_id == viewer.session_id:
        return back_to("/desk/login")
    if request.headers.get("hx-request"):
        return HTMLResponse("")  # htmx removes the row
    return back_to("/desk/")
