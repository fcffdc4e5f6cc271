"""The results pages in a real headless Chromium after a real send with clicks counted,
at 375 and 1280 px.

Screenshots go to tests/artifacts/ (desk-results-*.png, desk-issue-results-*.png).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from service.db import unit_of_work
from service.delivery.sender import DeliveryAgent
from service.runtime import Runtime
from tests.digests.test_results import started, unsubscribe_url
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import axe_violations, needs_chromium
from tests.support.smtp import SmtpRecorder
from tests.web.desk.test_desk_browser import desk_site, log_in
from tests.web.test_clicks import links_of, sent
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, direction, shot

__all__ = ["browser", "desk_site"]  # fixtures shared with the desk's browser test

pytestmark = needs_chromium
READER_AGENT = ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/126.0 Mobile Safari/537.36")


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_editor_reads_the_trend_and_one_issues_results(
        desk_site: tuple[str, Runtime], browser: Browser, smtp: SmtpRecorder, width: int) -> None:
    base, rt = desk_site
    rt.settings.track_clicks = "true"
    for number in (1, 2):
        DeliveryAgent(rt).deliver(started(rt, number, 4, prefix=f"r{number}-"))
    # Issue 3 went out an hour ago with three articles; readers follow its links.
    sent(rt, 3, readers=4, articles=3)
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "editor@example.com", "editor")
    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    # A reader's browser says it is one (headless Chromium names itself, as scanners do).
    page = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                               is_mobile=width < 600, has_touch=width < 600,
                               bypass_csp=True, user_agent=READER_AGENT).new_page()
    page.set_default_timeout(15_000)
    first, second, _ = (base + path for path in links_of(smtp, "n3-0@example.test"))
    # A reader follows the first story's link, then the second's; a link scanner asks for
    # the first with HEAD. The redirects are not followed: the news site is not on this machine.
    for link in (first, second):
        answer = page.request.get(link, max_redirects=0)
        assert answer.status == 302 and answer.headers["location"].startswith("https://news.example.com/")
    assert page.request.head(first, max_redirects=0).status == 302
    # A reader of issue 3 unsubscribes on the page the email's link opens.
    page.goto(base + unsubscribe_url(smtp, "n3-0@example.test"))
    page.click("form button[type=submit]")
    page.wait_for_selector("h1")

    log_in(page, base, "editor@example.com", PASSWORD)
    page.click("nav >> text=نتیجه‌ها")
    page.wait_for_selector("h1:has-text('نتیجهٔ شماره‌ها')")
    assert direction(page, "main") == "rtl"
    assert page.locator("svg.trend rect").count() == 9  # three rates for three issues
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-results")

    page.click("td a:has-text('۳')")
    page.wait_for_selector("h1:has-text('نتیجهٔ شمارهٔ ۳')")
    row = page.locator("tr", has_text="لغو عضویت با پیوند همین شماره")
    assert row.locator("td.num").all_inner_texts() == ["۱", "۸٫۳۳٪"]  # 1 of 12 sent
    clicks = page.locator("tr", has_text="همهٔ کلیک‌ها")
    assert clicks.locator("td.num").all_inner_texts() == ["۳"]
    human = page.locator("tr", has_text="کلیک‌های احتمالاً انسانی")
    assert human.locator("td.num").all_inner_texts() == ["۲"]
    assert page.locator("svg.click-bar").count() == 3  # one bar per article
    assert page.locator("svg.click-bar rect.human").first.get_attribute("width") != "0.0"
    assert "Apple Mail" in page.inner_text("main")
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-issue-results")
    page.context.close()
