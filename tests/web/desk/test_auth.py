"""Signing in and out: cookies, one answer for every refusal, throttle, lock-out, CSRF, TOTP."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff import accounts
from service.staff.models import AuditEntry, StaffAccount
from service.web.app import create_app
from tests.conftest import make_settings
from tests.staff.factories import PASSWORD, staff_account
from tests.web.desk.support import csrf_from, desk_client, desk_routes, sign_in
from tests.web.desk.test_matrix import EXPECTED


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    with unit_of_work(runtime.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
        staff_account(db, "ed@example.com", "editor")
    return runtime


def test_without_a_session_the_desk_sends_you_to_the_login_page(rt: Runtime) -> None:
    response = desk_client(rt).get("/desk/")
    assert response.status_code == 303 and response.headers["location"] == "/desk/login?next=/desk/"
    page = desk_client(rt).get("/desk/login")
    assert page.status_code == 200 and 'dir="rtl" lang="fa"' in page.text.replace('lang="fa" dir="rtl"',
                                                                                   'dir="rtl" lang="fa"')


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(rt: Runtime) -> None:
    client = desk_client(rt)
    response = sign_in(client, "Boss@Example.com")
    assert response.status_code == 303 and response.headers["location"] == "/desk/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("chapar_desk="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    home = client.get("/desk/")
    assert home.status_code == 200 and "boss@example.com" in home.text and "مدیر" in home.text
    out = client.post("/desk/logout", data={"csrf_token": csrf_from(home)})
    assert out.status_code == 303 and out.headers["location"] == "/desk/login"
    client.cookies.set("chapar_desk", cookie.split(";")[0].split("=", 1)[1], domain="testserver.local")
    assert client.get("/desk/").status_code == 303  # the old cookie is worth nothing now
    with rt.sessions() as db:
        assert [e.action for e in db.query(AuditEntry).order_by(AuditEntry.id)][-2:] == [
            "session.login", "session.logout"]


def test_cookies_are_not_secure_in_development(tmp_path: Path, sqlite_url: str) -> None:
    dev = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, environment="development"))
    page = desk_client(dev).get("/desk/login")
    assert "Secure" not in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    dev.close()


def test_unknown_address_and_wrong_password_get_the_same_answer(rt: Runtime) -> None:
    unknown = sign_in(desk_client(rt), "nobody@example.com")
    wrong = sign_in(desk_client(rt), "ed@example.com", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda text: text.replace("nobody@example.com", "X").replace("ed@example.com", "X")  # noqa: E731
    assert strip(csrf_free(unknown.text)) == strip(csrf_free(wrong.text))
    assert "درست نیست" in wrong.text


def csrf_free(html: str) -> str:
    import re
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


def test_the_login_form_needs_its_csrf_token(rt: Runtime) -> None:
    client = desk_client(rt)
    client.get("/desk/login")
    fields = {"email": "boss@example.com", "password": PASSWORD}
    assert client.post("/desk/login", data=fields).status_code == 403
    assert client.post("/desk/login", data={**fields, "csrf_token": "forged"}).status_code == 403
    other = desk_client(rt)  # a token from another browser does not match this one's cookie
    stolen = csrf_from(other.get("/desk/login"))
    refused = client.post("/desk/login", data={**fields, "csrf_token": stolen})
    assert refused.status_code == 403 and "نشانهٔ امنیتی" in refused.text


def test_every_state_changing_route_refuses_a_missing_or_wrong_token(rt: Runtime) -> None:
    client = desk_client(rt)
    sign_in(client, "boss@example.com")
    posts = [path for method, path in desk_routes(client.app) if method == "POST"]  # type: ignore[arg-type]
    assert set(posts) == {p for m, p in EXPECTED if m == "POST"}
    for template in posts:
        path = template.replace("{account_id}", "2").replace("{session_id}", "1").replace("{token}", "x")
        path = path.replace("{subscriber_id:int}", "1")  # only digits match that path
        for data in ({}, {"csrf_token": "wrong"}):
            response = client.post(path, data=data)
            assert response.status_code == 403, (template, data)
            assert "نشانهٔ امنیتی" in response.text
        assert client.post(path, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.get("/desk/").status_code == 200  # still signed in: nothing was done


def test_the_htmx_header_carries_the_token(rt: Runtime) -> None:
    client = desk_client(rt)
    sign_in(client, "boss@example.com")
    token = csrf_from(client.get("/desk/"))
    response = client.post("/desk/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 303


def test_repeated_failures_lock_the_account_for_a_while(runtime: Runtime, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=runtime.settings.database_url, staff_lockout_failures=3,
                             staff_login_rate_per_account="100/minute")
    rt = Runtime.from_settings(settings)
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "ed@example.com", "editor")
    client = desk_client(rt)
    for _ in range(3):
        assert sign_in(client, "ed@example.com", "wrong password!").status_code == 401
    locked = sign_in(client, "ed@example.com")  # the right password, but locked
    assert locked.status_code == 401
    with unit_of_work(rt.sessions) as db:
        account = accounts.find(db, "ed@example.com")
        assert account is not None and account.locked_until is not None
        assert [e.action for e in db.query(AuditEntry)][-1] == "staff.lock"
        account.locked_until = utcnow() - timedelta(seconds=1)  # the lock-out is over
    assert sign_in(client, "ed@example.com").status_code == 303
    rt.close()


def test_logins_are_throttled_per_address_and_per_client(runtime: Runtime, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=runtime.settings.database_url,
                             staff_login_rate_per_account="2/minute", staff_login_rate_per_client="4/minute")
    rt = Runtime.from_settings(settings)
    client = desk_client(rt, create_app(rt))
    assert sign_in(client, "a@example.com", "x" * 12).status_code == 401
    assert sign_in(client, "a@example.com", "x" * 12).status_code == 401
    assert sign_in(client, "A@example.com", "x" * 12).status_code == 429  # same address
    assert sign_in(client, "b@example.com", "x" * 12).status_code == 401
    assert sign_in(client, "c@example.com", "x" * 12).status_code == 429  # same client, 5th try
    rt.close()


def test_a_totp_account_needs_its_code(rt: Runtime) -> None:
    client = desk_client(rt)
    sign_in(client, "ed@example.com")
    setup = client.get("/desk/account/totp")
    secret = setup.text.split('name="secret" value="')[1].split('"')[0]
    wrong = client.post("/desk/account/totp", data={"csrf_token": csrf_from(setup), "secret": secret,
                                                    "code": "000000"})
    assert wrong.status_code == 422
    altered = client.post("/desk/account/totp", data={"csrf_token": csrf_from(setup),
                                                      "secret": "A" * 20, "code": "123456"})
    assert altered.status_code == 422 and 'value="' + "A" * 20 not in altered.text  # a fresh secret
    used = pyotp.TOTP(secret).now()
    ok = client.post("/desk/account/totp", data={"csrf_token": csrf_from(setup), "secret": secret,
                                                 "code": used})
    assert ok.status_code == 303
    assert sign_in(desk_client(rt), "ed@example.com").status_code == 401  # no code
    # The code that set TOTP up is used up (RFC 6238 5.2); the next step's code is
    # accepted as one step of clock drift, typed in Persian digits.
    assert sign_in(desk_client(rt), "ed@example.com", code=used).status_code == 401
    following = pyotp.TOTP(secret).at(time.time() + 30)
    persian = following.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert sign_in(desk_client(rt), "ed@example.com", code=persian).status_code == 303
    assert sign_in(desk_client(rt), "ed@example.com", code=following).status_code == 401  # once


def test_admins_must_set_up_totp_when_it_is_required(runtime: Runtime, tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=runtime.settings.database_url,
                                             staff_require_totp=True))
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
        staff_account(db, "ed@example.com", "editor")
    admin = desk_client(rt)
    sign_in(admin, "boss@example.com")
    assert admin.get("/desk/staff").headers["location"] == "/desk/account/totp"
    setup = admin.get("/desk/account/totp")
    assert setup.status_code == 200 and "لازم است" in setup.text
    secret = setup.text.split('name="secret" value="')[1].split('"')[0]
    admin.post("/desk/account/totp", data={"csrf_token": csrf_from(setup), "secret": secret,
                                           "code": pyotp.TOTP(secret).now()})
    assert admin.get("/desk/staff").status_code == 200
    editor = desk_client(rt)
    sign_in(editor, "ed@example.com")
    assert editor.get("/desk/").status_code == 200  # only admins are held to it
    with rt.sessions() as db:
        assert db.query(StaffAccount).filter_by(email="boss@example.com").one().totp_secret == secret
    rt.close()
