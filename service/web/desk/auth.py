"""Signing in and out, setting a password from an invitation, setting up TOTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.persian import single_line
from service.staff import accounts, invites, login, totp
from service.staff.audit import Actor
from service.staff.models import StaffAccount
from service.staff.passwords import MIN_LENGTH, WeakPassword
from service.web.desk.access import (
    SESSION_COOKIE,
    Viewer,
    client_address,
    current_viewer,
    guard,
    runtime,
)
from service.web.desk.view import back_to, desk_page, set_cookie

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

FAILED = "ایمیل یا گذرواژه (یا رمز یک‌بارمصرف) درست نیست، یا حساب موقتاً قفل شده است."
THROTTLED = "در مدت کوتاهی بارها تلاش شده است. چند دقیقهٔ دیگر دوباره امتحان کنید."
INVITE_ERRORS = {
    "expired": "این پیوند منقضی شده است. از مدیر بخواهید دوباره دعوتتان کند.",
    "used": "با این پیوند پیش‌تر گذرواژه ساخته شده است. از صفحهٔ ورود وارد شوید.",
    "invalid": "این پیوند نامعتبر است. پیوند را کامل از ایمیل کپی کنید.",
}


def safe_next(value: str) -> str:
    """Only a desk path on this site; anything else (//evil, https://...) goes home."""
    return value if value.startswith("/desk/") and not value.startswith("//") else "/desk/"


@router.get("/desk/login")
def login_page(request: Request, next: str = "/desk/", welcome: str = "") -> Response:
    notice = "گذرواژه ذخیره شد. اکنون وارد شوید." if welcome else None
    return desk_page(request, "login.html", None, next=safe_next(next), email="", error=None,
                     notice=notice)


@router.post("/desk/login")
def login_submit(request: Request, email: str = Form(""), password: str = Form(""),
                 totp: str = Form(""), next: str = Form("/desk/")) -> Response:
    rt, client = runtime(request), client_address(request)
    typed = single_line(email)[:320]
    if not request.app.state.login_throttle.allow(typed, client):
        return desk_page(request, "login.html", None, status_code=429, next=safe_next(next),
                         email=typed, error=THROTTLED, notice=None)
    agent = single_line(request.headers.get("user-agent", ""))
    with unit_of_work(rt.sessions) as db:
        token = login.sign_in(db, typed, password, totp, client, agent, utcnow(),
                              login.Lockout.from_settings(rt.settings))
    if token is None:
        return desk_page(request, "login.html", None, status_code=401, next=safe_next(next),
                         email=typed, error=FAILED, notice=None)
    response = back_to(safe_next(next))
    set_cookie(request, response, SESSION_COOKIE, token, None)
    return response


@router.post("/desk/logout")
def logout(request: Request) -> Response:
    with unit_of_work(runtime(request).sessions) as db:
        login.sign_out(db, request.cookies.get(SESSION_COOKIE, ""), client_address(request), utcnow())
    response = back_to("/desk/login")
    response.delete_cookie(SESSION_COOKIE, path="/desk")
    return response


def invited(request: Request, token: str, db: Session) -> StaffAccount | Response:
    try:
        return invites.read_token(runtime(request), db, token)
    except invites.InviteError as exc:
        return desk_page(request, "error.html", None, status_code=400, heading="پیوند کار نمی‌کند",
                         message=INVITE_ERRORS[exc.reason])


@router.get("/desk/welcome/{token}")
def welcome_page(request: Request, token: str) -> Response:
    with runtime(request).sessions() as db:
        account = invited(request, token, db)
        if isinstance(account, Response):
            return account
        return desk_page(request, "welcome.html", None, token=token, email=account.email,
                         role=account.role, min_length=MIN_LENGTH, error=None)


@router.post("/desk/welcome/{token}")
def welcome_submit(request: Request, token: str, password: str = Form(""),
                   password2: str = Form("")) -> Response:
    with unit_of_work(runtime(request).sessions) as db:
        account = invited(request, token, db)
        if isinstance(account, Response):
            return account
        try:
            if password != password2:
                raise WeakPassword("دو گذرواژه یکی نیستند.")
            actor = Actor.of(account, client_address(request))
            accounts.set_password(db, actor, account, password, utcnow())
        except WeakPassword as exc:
            message = str(exc) if password != password2 else f"گذرواژه دست‌کم {MIN_LENGTH} نویسه لازم دارد."
            return desk_page(request, "welcome.html", None, status_code=422, token=token,
                             email=account.email, role=account.role, min_length=MIN_LENGTH,
                             error=message)
    return back_to("/desk/login?welcome=1")


def totp_page(request: Request, viewer: Viewer, secret: str, error: str | None = None,
              status_code: int = 200) -> Response:
    return desk_page(request, "totp.html", viewer, status_code=status_code, secret=secret,
                     uri=totp.provisioning_uri(secret, viewer.email), error=error,
                     required=runtime(request).settings.staff_require_totp and viewer.role == "admin")


@router.get("/desk/account/totp")
def totp_setup(request: Request) -> Response:
    return totp_page(request, current_viewer(request), totp.new_secret())


@router.post("/desk/account/totp")
def totp_confirm(request: Request, secret: str = Form(""), code: str = Form("")) -> Response:
    viewer = current_viewer(request)
    now = utcnow()
    step = totp.matching_step(secret, code, now)
    if step is None:
        return totp_page(request, viewer, secret if totp.usable(secret) else totp.new_secret(),
                         error="رمز درست نیست؛ رمز تازه‌ای را که برنامه نشان می‌دهد وارد کنید.",
                         status_code=422)
    with unit_of_work(runtime(request).sessions) as db:
        account = accounts.get(db, viewer.account_id)
        accounts.set_totp(db, Actor.of(account, client_address(request)), account, secret, now, step)
    return back_to("/desk/?totp=1")
