"""The desk in a real headless Chromium: an admin invites an editor, who signs in and sees their share.

Screenshots of the login, home, staff and API-docs pages at 375 and 1280 px go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from service.db import unit_of_work
from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import needs_chromium, serving
from tests.support.network import free_port
from tests.support.smtp import SmtpRecorder
from tests.web.test_pages_browser import (
    WIDTHS,
    assert_fits_the_screen,
    browser,
    direction,
    shot,
)

__all__ = ["browser"]  # the module-scoped Chromium fixture

pytestmark = needs_chromium
LINK = re.compile(r"https?://\S+/desk/welcome/[\w.\-]+")


@pytest.fixture
def desk_site(sqlite_url: str, tmp_path: Path, smtp: SmtpRecorder) -> Iterator[tuple[str, Runtime]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, public_url=base,
                                             smtp_url=smtp.url))
    truncate_all(rt)
    try:
        with serving(create_app(rt), port):
            yield base, rt
    finally:
        truncate_all(rt)
        rt.close()


def tab(browser: Browser, width: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  is_mobile=width < 600, has_touch=width < 600)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def log_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/desk/")
    assert "/desk/login" in page.url
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form[action='/desk/login'] button[type=submit]")
    page.wait_for_selector("text=سلام،")


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_admin_invites_an_editor_who_signs_in_and_sees_their_share(
        desk_site: tuple[str, Runtime], browser: Browser, smtp: SmtpRecorder, width: int) -> None:
    base, rt = desk_site
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
    admin = tab(browser, width)
    admin.goto(base + "/desk/login")
    assert direction(admin, "body") == "rtl" and admin.locator("html[lang=fa][dir=rtl]").count() == 1
    assert_fits_the_screen(admin)
    shot(admin, "desk-login")
    log_in(admin, base, "boss@example.com", PASSWORD)
    assert_fits_the_screen(admin)
    assert admin.locator("text=مدیر").count() >= 1
    assert re.search("[۰-۹]", admin.inner_text("table"))  # dates in Persian digits
    shot(admin, "desk-home")

    admin.click("nav >> text=کارکنان")
    admin.fill("#invite-email", "editor@example.com")
    admin.fill("#invite-name", "سارا")
    admin.select_option("#invite-role", "editor")
    admin.click("text=فرستادن دعوت‌نامه")
    admin.wait_for_selector("text=دعوت‌نامه فرستاده شد")
    assert admin.locator("td", has_text="editor@example.com").count() == 1
    assert_fits_the_screen(admin) if width >= 600 else None  # the table scrolls inside its card
    shot(admin, "desk-staff")
    admin.click("nav >> text=مستندات API")
    admin.wait_for_selector("h1:has-text('مستندات API')")
    assert admin.locator("section.endpoint").count() >= 3
    assert_fits_the_screen(admin)
    shot(admin, "desk-api")

    [mail] = smtp.messages
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = LINK.search(text).group(0)  # type: ignore[union-attr]
    editor = tab(browser, width)
    editor.goto(link)
    editor.fill("#password", "the editor's own password")
    editor.fill("#password2", "the editor's own password")
    editor.click("text=ذخیرهٔ گذرواژه")
    editor.wait_for_selector("text=گذرواژه ذخیره شد")
    log_in(editor, base, "editor@example.com", "the editor's own password")
    assert editor.locator("text=ویراستار").count() >= 1
    nav = editor.inner_text("header nav")
    assert "مستندات API" in nav and "کارکنان" not in nav and "گزارش رویدادها" not in nav
    editor.goto(base + "/desk/staff")
    assert editor.locator("h1", has_text="دسترسی ندارید").count() == 1

    editor.goto(base + "/desk/")
    editor.click("header >> text=خروج")
    editor.wait_for_url(re.compile(r".*/desk/login$"))
    editor.context.close()
    admin.context.close()
