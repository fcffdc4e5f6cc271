"""Staff management (staff.manage): invite, change role, disable; and the audit log."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from service.clock import utcnow
from service.db import unit_of_work
from service.staff import accounts, audit, invites
from service.staff.audit import Actor
from service.staff.permissions import ROLES
from service.subscribers.addresses import AddressError
from service.web.desk.access import Viewer, client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

NOTICES = {
    "invited": "دعوت‌نامه فرستاده شد.",
    "role": "نقش تغییر کرد.",
    "disabled": "حساب غیرفعال شد و نشست‌هایش پایان یافت.",
    "enabled": "حساب دوباره فعال شد.",
}


def staff_page(request: Request, viewer: Viewer, *, error: str | None = None, notice: str = "",
               status_code: int = 200, email: str = "", name: str = "") -> Response:
    with runtime(request).sessions() as db:
        people = accounts.all_accounts(db)
        return desk_page(request, "staff.html", viewer, status_code=status_code, people=people,
                         roles=list(ROLES), error=error, notice=NOTICES.get(notice), email=email,
                         name=name)


@router.get("/desk/staff")
def staff_list(request: Request, done: str = "") -> Response:
    return staff_page(request, current_viewer(request), notice=done)


@router.post("/desk/staff/invite")
def invite(request: Request, email: str = Form(""), name: str = Form(""),
           role: str = Form("viewer")) -> Response:
    viewer, rt = current_viewer(request), runtime(request)
    now = utcnow()
    actor = Actor(viewer.account_id, viewer.email, client_address(request))
    try:
        with unit_of_work(rt.sessions) as db:
            account = accounts.invite(db, actor, email, role, now, name=name)
            rendered = invites.render_invite(rt, account, viewer.display_name)
    except AddressError as exc:
        return staff_page(request, viewer, error=exc.message, status_code=422, email=email, name=name)
    except ValueError as exc:
        return staff_page(request, viewer, error=message_for(exc), status_code=422, email=email, name=name)
    try:
        invites.send_staff_email(rt, rendered, account.email, now)
    except OSError as exc:
        # No account is left behind that nobody was told about: the admin simply retries.
        log.warning("could not mail a staff invitation to %s: %s", account.email, exc)
        with unit_of_work(rt.sessions) as db:
            accounts.withdraw_invite(db, actor, account.id, utcnow(), f"not mailed: {exc}")
        return staff_page(request, viewer, error="ایمیل دعوت فرستاده نشد؛ کمی بعد دوباره تلاش کنید.",
                          status_code=503, email=email, name=name)
    return back_to("/desk/staff?done=invited")


def message_for(exc: ValueError) -> str:
    text = str(exc)
    if "already exists" in text:
        return "برای این نشانی پیش‌تر حساب ساخته شده است."
    if "last active admin" in text:
        return "این آخرین مدیر فعال است؛ نخست مدیر دیگری تعیین کنید."
    if "unknown role" in text:
        return "نقش انتخاب‌شده وجود ندارد."
    return "این کار انجام نشد."


def change(request: Request, account_id: int, done: str, action: str, role: str = "") -> Response:
    viewer = current_viewer(request)
    try:
        with unit_of_work(runtime(request).sessions) as db:
            actor = Actor(viewer.account_id, viewer.email, client_address(request))
            account = accounts.get(db, account_id)
            now = utcnow()
            if action == "role":
                accounts.change_role(db, actor, account, role, now)
            elif action == "disable":
                accounts.disable(db, actor, account, now)
            else:
                accounts.enable(db, actor, account, now)
    except ValueError as exc:
        return staff_page(request, viewer, error=message_for(exc), status_code=422)
    return back_to(f"/desk/staff?done={done}")


@router.post("/desk/staff/{account_id}/role")
def change_role(request: Request, account_id: int, role: str = Form("")) -> Response:
    return change(request, account_id, "role", "role", role)


@router.post("/desk/staff/{account_id}/disable")
def disable(request: Request, account_id: int) -> Response:
    return change(request, account_id, "disabled", "disable")


@router.post("/desk/staff/{account_id}/enable")
def enable(request: Request, account_id: int) -> Response:
    return change(request, account_id, "enabled", "enable")


@router.get("/desk/audit")
def audit_log(request: Request, before: int | None = None) -> Response:
    with runtime(request).sessions() as db:
        entries = audit.recent(db, 100, before_id=before)
        return desk_page(request, "audit.html", current_viewer(request), entries=entries,
                         older=entries[-1].id if len(entries) == 100 else None)
