"""The checks panel in a real headless Chromium: read without JavaScript, re-run with htmx, override.

Screenshots at 375 and 1280 px go to tests/artifacts/ (desk-issue-checks-*.png).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from service.db import unit_of_work
from service.runtime import Runtime
from tests.delivery.factories import make_issue
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import axe_violations, needs_chromium
from tests.web.desk.test_desk_browser import desk_site, log_in
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, direction, shot

__all__ = ["browser", "desk_site"]  # fixtures shared with the desk's browser test

pytestmark = needs_chromium


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_admin_reads_the_checks_reruns_them_and_overrides_a_blocker(
        desk_site: tuple[str, Runtime], browser: Browser, width: int) -> None:
    base, rt = desk_site
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
        make_issue(db, number=4).subject = ""

    # Without JavaScript the panel is a page of its own, and its forms work.
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  java_script_enabled=False)
    plain = context.new_page()
    plain.goto(base + "/desk/login")
    plain.fill("#email", "boss@example.com")
    plain.fill("#password", PASSWORD)
    plain.click("form[action='/desk/login'] button[type=submit]")
    plain.wait_for_selector("text=سلام،")
    plain.goto(base + "/desk/issues/4/checks")
    assert plain.locator("[role=alert]").inner_text() == "ارسال متوقف است: ۱ مانع باید برطرف شود."
    assert plain.locator("li.finding", has_text="موضوع نامه خالی است").count() == 1
    context.close()

    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    admin = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                is_mobile=width < 600, has_touch=width < 600,
                                bypass_csp=True).new_page()
    admin.set_default_timeout(15_000)
    log_in(admin, base, "boss@example.com", PASSWORD)
    admin.goto(base + "/desk/issues/4/checks")
    assert direction(admin, "#checks") == "rtl"
    assert admin.locator("text=موضوع نامه خالی است").count() == 1
    assert_fits_the_screen(admin)
    assert axe_violations(admin) == []
    shot(admin, "desk-issue-checks")

    admin.click("text=بررسی دوباره و بررسی پیوندها")  # htmx posts and swaps the panel in place
    admin.wait_for_selector("text=بررسی دوباره انجام شد")
    assert admin.url.endswith("/desk/issues/4/checks")  # swapped, not navigated
    admin.fill("#override-reason", "سردبیر موضوع را تلفنی تأیید کرد")
    admin.click("text=ارسال با وجود مانع‌ها مجاز شود")
    admin.wait_for_selector("text=در گزارش رویدادها ثبت شد")
    assert admin.locator("[role=alert]").count() == 0
    assert axe_violations(admin) == []
    shot(admin, "desk-issue-checks-overridden")
    admin.goto(base + "/desk/audit")
    assert admin.locator("td", has_text="issue.checks_override").count() == 1
    admin.context.close()
