"""An editor in Chromium: opens the issue, moves an article up, previews at 375 px, sends a test.

Screenshots of the issue page and its preview at 375 and 1280 px go to tests/artifacts/;
axe-core finds no WCAG A/AA violation on either page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Browser

from service.clock import utcnow
from service.db import unit_of_work
from service.digests.build import build_issue
from service.runtime import Runtime
from tests.digests.factories import article
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import axe_violations, needs_chromium
from tests.support.smtp import SmtpRecorder
from tests.web.desk.test_desk_browser import desk_site, log_in
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, shot

__all__ = ["browser", "desk_site"]  # fixtures

pytestmark = needs_chromium


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_editor_reorders_previews_and_sends_a_test(
        desk_site: tuple[str, Runtime], browser: Browser, smtp: SmtpRecorder, width: int) -> None:
    base, rt = desk_site
    now = utcnow()
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "editor@example.com", "editor")
        for n, section in enumerate(["سیاست", "ورزش", "فرهنگ"], start=1):
            article(db, now - timedelta(hours=n), title=f"خبر شمارهٔ {n} دربارهٔ گزارش‌ها",
                    section=section)
        assert build_issue(db, rt.settings, now).issue is not None

    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  is_mobile=width < 600, has_touch=width < 600, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in(page, base, "editor@example.com", PASSWORD)
    page.goto(base + "/desk/issues/1")
    titles = page.locator("#articles .item-title")
    assert titles.all_inner_texts()[:3] == [f"خبر شمارهٔ {n} دربارهٔ گزارش‌ها" for n in (1, 2, 3)]
    page.click("button[aria-label='بالا بردن «خبر شمارهٔ ۳ دربارهٔ گزارش‌ها»'], "
               "button[aria-label='بالا بردن «خبر شمارهٔ 3 دربارهٔ گزارش‌ها»']")
    page.wait_for_selector("text=ترتیب خبرها ذخیره شد")
    assert titles.all_inner_texts()[1] == "خبر شمارهٔ 3 دربارهٔ گزارش‌ها"
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-issue")

    page.click("text=پیش‌نمایش و ارسال آزمایشی")
    page.wait_for_selector("iframe")
    assert page.locator("iframe[width='375']").count() == 1
    frame = page.frame_locator("iframe[width='375']")
    headings = frame.locator("h2").all_inner_texts()
    assert headings.index("خبر شمارهٔ 3 دربارهٔ گزارش‌ها") < headings.index("خبر شمارهٔ 2 دربارهٔ گزارش‌ها")
    assert "خبر شمارهٔ 3" in page.inner_text("pre.text-version")
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-issue-preview")

    page.click("text=فرستادن نسخهٔ آزمایشی")
    page.wait_for_selector("text=نسخهٔ آزمایشی به ۱ نشانی فرستاده شد")
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["editor@example.com"]
    assert str(mail.message["Subject"]).startswith("[آزمایشی] ")
    page.context.close()
