"""Rendering desk pages: the signed-in person, their CSRF token, Persian dates, cookies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.persian import jalali_datetime
from service.staff.permissions import ROLE_LABELS, Permission
from service.web.desk.access import (
    COOKIE_PATH,
    FORM_COOKIE,
    FORM_MAX_AGE,
    Viewer,
    form_cookie_value,
    form_token,
    runtime,
)
from service.web.pages import TEMPLATES

TEMPLATES.env.globals["ROLE_LABELS"] = ROLE_LABELS

# The desk's areas, in menu order: (path, label, permission or None for every signed-in person).
AREAS: list[tuple[str, str, Permission | None]] = [
    ("/desk/", "خانه", None),
    ("/desk/issues", "شماره‌ها", None),
    ("/desk/schedule", "زمان‌بندی", None),
    ("/desk/readers", "خوانندگان", Permission.SUBSCRIBERS_VIEW),
    ("/desk/results", "نتیجه‌ها", Permission.STATS_VIEW),
    ("/desk/growth", "رشد فهرست", Permission.STATS_VIEW),
    ("/desk/readers/import", "درون‌ریزی خوانندگان", Permission.SUBSCRIBERS_MANAGE),
    ("/desk/ops", "کنسول عملیات", Permission.OPS_VIEW),
    ("/desk/staff", "کارکنان", Permission.STAFF_MANAGE),
    ("/desk/audit", "گزارش رویدادها", Permission.STAFF_MANAGE),
    ("/desk/api", "مستندات API", None),
    ("/desk/account/totp", "رمز یک‌بارمصرف", None),
]


def secure_cookies(request: Request) -> bool:
    return runtime(request).settings.environment != "development"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=secure_cookies(request))


def desk_page(request: Request, template: str, viewer: Viewer | None, *, status_code: int = 200,
              **context: Any) -> HTMLResponse:
    """A desk page; without a session its forms carry the pre-session CSRF token."""
    rt = runtime(request)
    tz = rt.settings.tz
    new_cookie = ""
    if viewer is not None:
        csrf = viewer.csrf_token
        context["areas"] = [(path, label) for path, label, need in AREAS
                            if need is None or viewer.may(need)]
    else:
        cookie, is_new = form_cookie_value(request)
        csrf = form_token(request, cookie)
        new_cookie = cookie if is_new else ""
    context.update(viewer=viewer, csrf_token=csrf, list_name=rt.settings.list_name,
                   when=lambda moment: jalali_datetime(moment, tz) if moment else "")
    response = TEMPLATES.TemplateResponse(request, f"desk/{template}", context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    if new_cookie:
        set_cookie(request, response, FORM_COOKIE, new_cookie, FORM_MAX_AGE)
    return response


def back_to(path: str) -> RedirectResponse:
    """After a form post: see the result on a page (POST, redirect, GET)."""
    return RedirectResponse(path, status_code=303)


def local_time(moment: datetime | None, request: Request) -> str:
    return jalali_datetime(moment, runtime(request).settings.tz) if moment else ""
