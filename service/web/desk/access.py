"""Who may open which desk route: the one table, and the one guard that consults it.

Every desk route is listed in ACCESS with what it needs: nothing (the login and
set-password pages), a signed-in person, or a permission. The guard runs before every
desk route; a route missing from the table is refused outright, so a new page cannot
be published by forgetting to say who may see it. The guard also checks CSRF on every
state-changing request: the session's token for signed-in people, a signed
double-submit cookie for the forms used before there is a session.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff import sessions
from service.staff.permissions import Permission, allows

log = logging.getLogger(__name__)

PUBLIC: Final = "public"
SIGNED_IN: Final = "signed-in"
Rule = Permission | str

P = Permission
ACCESS: dict[tuple[str, str], Rule] = {
    ("GET", "/desk/login"): PUBLIC,
    ("POST", "/desk/login"): PUBLIC,
    ("GET", "/desk/welcome/{token}"): PUBLIC,
    ("POST", "/desk/welcome/{token}"): PUBLIC,
    ("POST", "/desk/logout"): SIGNED_IN,
    ("GET", "/desk/"): SIGNED_IN,
    ("POST", "/desk/sessions/{session_id}/revoke"): SIGNED_IN,
    ("GET", "/desk/account/totp"): SIGNED_IN,
    ("POST", "/desk/account/totp"): SIGNED_IN,
    ("GET", "/desk/api"): SIGNED_IN,
    ("GET", "/desk/staff"): P.STAFF_MANAGE,
    ("POST", "/desk/staff/invite"): P.STAFF_MANAGE,
    ("POST", "/desk/staff/{account_id}/role"): P.STAFF_MANAGE,
    ("POST", "/desk/staff/{account_id}/disable"): P.STAFF_MANAGE,
    ("POST", "/desk/staff/{account_id}/enable"): P.STAFF_MANAGE,
    ("GET", "/desk/audit"): P.STAFF_MANAGE,
    ("GET", "/desk/issues"): SIGNED_IN,
    ("GET", "/desk/issues/{number}/review"): SIGNED_IN,
    ("POST", "/desk/issues/{number}/review/request"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/review/approve"): P.ISSUES_APPROVE,
    ("POST", "/desk/issues/{number}/review/send-back"): P.ISSUES_APPROVE,
    ("POST", "/desk/issues/{number}/review/schedule"): P.ISSUES_APPROVE,
    ("POST", "/desk/issues/{number}/review/send-now"): P.ISSUES_SEND,
    # Everyone may read the coming slots; staff.manage moves the slot, editors skip a week.
    ("GET", "/desk/schedule"): SIGNED_IN,
    ("POST", "/desk/schedule"): P.STAFF_MANAGE,
    ("POST", "/desk/schedule/skip"): P.ISSUES_PREPARE,
    ("POST", "/desk/schedule/unskip"): P.ISSUES_PREPARE,
    ("GET", "/desk/issues/{number}"): SIGNED_IN,
    ("POST", "/desk/issues/{number}/articles/{item_id}/move"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/articles/{item_id}/exclude"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/articles/{item_id}/pin"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/lead"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/grouping"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/text"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/rebuild"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/add"): P.ISSUES_PREPARE,
    ("GET", "/desk/issues/{number}/preview"): P.ISSUES_PREPARE,
    ("GET", "/desk/issues/{number}/preview/email"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/test-send"): P.ISSUES_PREPARE,
    ("GET", "/desk/issues/{number}/checks"): SIGNED_IN,
    ("POST", "/desk/issues/{number}/checks/run"): P.ISSUES_PREPARE,
    ("POST", "/desk/issues/{number}/checks/override"): P.STAFF_MANAGE,
    ("GET", "/desk/results"): P.STATS_VIEW,
    ("GET", "/desk/issues/{number}/results"): P.STATS_VIEW,
    ("GET", "/desk/readers"): P.SUBSCRIBERS_VIEW,
    ("GET", "/desk/readers/{subscriber_id:int}"): P.SUBSCRIBERS_VIEW,
    # Exporting the list hands every address out of the desk: a data-protection matter.
    ("POST", "/desk/readers/export"): P.SUBSCRIBERS_MANAGE,
    ("POST", "/desk/readers/{subscriber_id:int}/unsubscribe"): P.SUBSCRIBERS_MANAGE,
    ("POST", "/desk/readers/{subscriber_id:int}/resend-confirmation"): P.SUBSCRIBERS_MANAGE,
    ("GET", "/desk/readers/{subscriber_id:int}/erase"): P.SUBSCRIBERS_MANAGE,
    ("POST", "/desk/readers/{subscriber_id:int}/erase"): P.SUBSCRIBERS_MANAGE,
    ("GET", "/desk/ops"): P.OPS_VIEW,
    ("GET", "/desk/ops/live"): P.OPS_VIEW,
    ("POST", "/desk/ops/issues/{number}/{action}"): P.OPS_ACT,
    ("POST", "/desk/ops/domains/pause"): P.OPS_ACT,
    ("POST", "/desk/ops/domains/{domain}/resume"): P.OPS_ACT,
    ("POST", "/desk/ops/workers/{name}/drain"): P.OPS_ACT,
    ("GET", "/desk/readers/import"): P.SUBSCRIBERS_MANAGE,
    ("POST", "/desk/readers/import"): P.SUBSCRIBERS_MANAGE,
    ("GET", "/desk/readers/imports/{job_id}"): P.SUBSCRIBERS_MANAGE,
    ("GET", "/desk/readers/imports/{job_id}/rejected.csv"): P.SUBSCRIBERS_MANAGE,
    # Weekly counts with no address in them, like the per-issue results: whoever reads
    # results (ops too, who watch unsubscribes after a send) reads growth, and
    # subscribers.view, which opens single readers' records, is not needed for totals.
    ("GET", "/desk/growth"): P.STATS_VIEW,
}
# Forms that carry a file: the guard reads their CSRF field from a body with one file.
UPLOADS = frozenset({("POST", "/desk/readers/import")})
# Pages an admin without TOTP may still open while CHAPAR_STAFF_REQUIRE_TOTP is on.
TOTP_SETUP = frozenset({("GET", "/desk/account/totp"), ("POST", "/desk/account/totp"),
                        ("POST", "/desk/logout")})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SESSION_COOKIE = "chapar_desk"
FORM_COOKIE = "chapar_desk_form"  # the pre-session CSRF value (login, set password)
FORM_SALT = "chapar.desk-form"
FORM_MAX_AGE = 2 * 3600
COOKIE_PATH = "/desk"


@dataclass(frozen=True)
class Viewer:
    """The signed-in person for this request, as plain values."""

    account_id: int
    email: str
    name: str
    role: str
    session_id: int
    csrf_token: str
    has_totp: bool

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    @property
    def display_name(self) -> str:
        return self.name or self.email


class NeedLogin(Exception):
    """No live session: the answer is a redirect to the login page."""


class Refused(Exception):
    """A 403 with a Persian page saying why."""

    def __init__(self, heading: str, message: str) -> None:
        super().__init__(message)
        self.heading = heading
        self.message = message


class NeedTotp(Exception):
    """An admin without TOTP while it is required: the answer is the TOTP setup page."""


def no_permission() -> Refused:
    return Refused("دسترسی ندارید", "نقش شما اجازهٔ باز کردن این صفحه یا انجام این کار را نمی‌دهد.")


def bad_token() -> Refused:
    return Refused("درخواست پذیرفته نشد",
                   "نشانهٔ امنیتی فرم نادرست است یا منقضی شده. صفحه را دوباره باز کنید و دوباره بفرستید.")


def same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def route_key(request: Request) -> tuple[str, str]:
    """(method, path template) of the matched route; HEAD is answered as GET."""
    method = "GET" if request.method == "HEAD" else request.method
    return method, str(getattr(request.scope.get("route"), "path", ""))


def rule_for(request: Request) -> Rule:
    try:
        return ACCESS[route_key(request)]
    except KeyError:
        log.error("desk route %s %s has no access rule; refused", *route_key(request))
        raise no_permission() from None


async def presented_token(request: Request) -> str:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        files = 1 if route_key(request) in UPLOADS else 0
        value = (await request.form(max_files=files, max_fields=50)).get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


def _form_serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(runtime(request).settings.secret_key, salt=FORM_SALT)


def form_cookie_value(request: Request) -> tuple[str, bool]:
    """The browser's pre-session CSRF value, and whether it is new (to be set as a cookie)."""
    value = request.cookies.get(FORM_COOKIE, "")
    if len(value) >= 32:
        return value, False
    return secrets.token_urlsafe(32), True


def form_token(request: Request, cookie_value: str) -> str:
    return _form_serializer(request).dumps(cookie_value)


def form_token_matches(request: Request, token: str) -> bool:
    cookie = request.cookies.get(FORM_COOKIE, "")
    if not cookie or not token:
        return False
    try:
        value = _form_serializer(request).loads(token, max_age=FORM_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(value, str) and same(value, cookie)


def load_viewer(rt: Runtime, token: str) -> Viewer | None:
    with unit_of_work(rt.sessions) as db:
        row = sessions.resume(db, token, utcnow(), sessions.Lifetime.from_settings(rt.settings))
        if row is None:
            return None
        a = row.account
        return Viewer(a.id, a.email, a.name, a.role, row.id, row.csrf_token, a.totp_secret is not None)


async def guard(request: Request) -> None:
    """Run before every desk route: session, TOTP requirement, permission, CSRF."""
    rule = rule_for(request)
    key = route_key(request)
    unsafe = request.method not in SAFE_METHODS
    if rule == PUBLIC:
        if unsafe and not form_token_matches(request, await presented_token(request)):
            raise bad_token()
        return
    rt = runtime(request)
    viewer = await run_in_threadpool(load_viewer, rt, request.cookies.get(SESSION_COOKIE, ""))
    if viewer is None:
        raise NeedLogin
    request.state.viewer = viewer
    if unsafe and not same(await presented_token(request), viewer.csrf_token):
        raise bad_token()
    if (rt.settings.staff_require_totp and viewer.role == "admin" and not viewer.has_totp
            and key not in TOTP_SETUP):
        raise NeedTotp
    if isinstance(rule, Permission) and not viewer.may(rule):
        raise no_permission()


def current_viewer(request: Request) -> Viewer:
    """The signed-in person (the guard has put them on the request)."""
    viewer: Viewer = request.state.viewer
    return viewer
