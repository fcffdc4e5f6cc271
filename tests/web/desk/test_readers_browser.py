"""The readers pages in a real headless Chromium at 375 and 1280 px: an admin searches, opens a
reader and unsubscribes them.

Screenshots go to tests/artifacts/ (desk-readers-*.png, desk-reader-*.png).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Browser

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import IssueStatus
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status, Subscriber
from tests.delivery.factories import make_issue
from tests.staff.factories import PASSWORD, staff_account
from tests.subscribers.factories import confirm
from tests.support.browser import axe_violations, needs_chromium
from tests.web.desk.test_desk_browser import desk_site, log_in
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, direction, shot

__all__ = ["browser", "desk_site"]  # fixtures shared with the desk's browser test

pytestmark = needs_chromium


def readers(rt: Runtime) -> None:
    """Sixty readers over sixty days, and Sara, who has had two issues."""
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        staff_account(session, "boss@example.com", "admin")
        for n in range(60):
            at = now - timedelta(days=60 - n)
            session.add(Subscriber(email=f"reader{n}@{('gmail.com', 'yahoo.com', 'chmail.ir')[n % 3]}",
                                   status=(Status.CONFIRMED, Status.PENDING, Status.UNSUBSCRIBED)[n % 3],
                                   created_at=at, updated_at=at, consent_source="import:print-1403.csv",
                                   consent_at=at))
        sara = store.subscribe(session, "sara.ahmadi@example.com",
                               store.Consent("web:embed", "203.0.113.9", "Mozilla/5.0"), now).subscriber_id
        confirm(session, sara, now)
        for number, status in ((1, DeliveryStatus.SENT), (2, DeliveryStatus.DEFERRED)):
            issue = make_issue(session, number, IssueStatus.SENT)
            session.add(Delivery(issue_id=issue.id, subscriber_id=sara, domain="example.com", status=status,
                                 attempts=1, created_at=now, updated_at=now,
                                 sent_at=now if status is DeliveryStatus.SENT else None,
                                 last_code=None if status is DeliveryStatus.SENT else 451,
                                 last_error=None if status is DeliveryStatus.SENT else "4.7.1 try later"))


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_admin_finds_a_reader_and_unsubscribes_them(
        desk_site: tuple[str, Runtime], browser: Browser, width: int) -> None:
    base, rt = desk_site
    readers(rt)
    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    page = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                               is_mobile=width < 600, has_touch=width < 600,
                               bypass_csp=True).new_page()
    page.set_default_timeout(15_000)
    log_in(page, base, "boss@example.com", PASSWORD)
    page.click("header nav >> text=خوانندگان")
    page.wait_for_selector("h1:has-text('خوانندگان')")
    assert page.locator("#results h2").inner_text() == "۶۱ خواننده"
    assert page.locator("table.readers tbody tr").count() == 50
    assert page.locator("a[rel=next]").count() == 1

    page.fill("#readers-address", "AHMADI@")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#results h2:has-text('۱ خواننده')")
    page.wait_for_url(re.compile(r".*/desk/readers\?address=AHMADI%40.*"))  # a link, for the back button
    assert direction(page, "main") == "rtl"
    assert direction(page, "#readers-address") == "ltr"
    assert page.locator("table.readers td.address").all_inner_texts() == ["sara.ahmadi@example.com"]
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-readers")

    page.click("text=sara.ahmadi@example.com")
    page.wait_for_selector("h1:has-text('sara.ahmadi@example.com')")
    main = page.inner_text("main")
    assert "web:embed" in main and "203.0.113.9" in main  # the consent
    assert "فرستاده شد" in main and "به تعویق افتاد" in main and "4.7.1 try later" in main
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-reader")

    page.click("button:has-text('لغو عضویت')")
    page.wait_for_selector("text=عضویت این خواننده لغو شد")
    assert page.locator("dl.facts .tag").inner_text() == "لغو عضویت"
    assert page.locator("button:has-text('لغو عضویت')").count() == 0
    assert axe_violations(page) == []
    with rt.sessions() as session:
        sara = store.find_by_email(session, "sara.ahmadi@example.com")
        assert sara is not None and sara.status is Status.UNSUBSCRIBED
    page.context.close()
