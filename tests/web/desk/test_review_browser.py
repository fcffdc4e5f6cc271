"""The desk in Chromium across its areas: an editor asks for review on the issue page, a
chief editor approves it there; an admin opens every desk page.

Every page is checked at 375 and 1280 px (no sideways scrolling, axe-core finds no WCAG
A/AA violation) and photographed to tests/artifacts/desk-page-<name>-<width>.png.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import review
from service.digests.build import build_issue
from service.digests.models import IssueStatus
from service.runtime import Runtime
from service.subscribers import store
from tests.digests.factories import article
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import axe_violations, needs_chromium
from tests.web.desk.test_desk_browser import desk_site, log_in
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, shot

__all__ = ["browser", "desk_site"]  # fixtures

pytestmark = needs_chromium

# Every page of the desk a signed-in admin opens, by name (issue 1 exists; {reader} is a reader's id).
PAGES = {
    "home": "/desk/",
    "issues": "/desk/issues",
    "issue": "/desk/issues/1",
    "preview": "/desk/issues/1/preview",
    "review": "/desk/issues/1/review",
    "checks": "/desk/issues/1/checks",
    "issue-results": "/desk/issues/1/results",
    "results": "/desk/results",
    "readers": "/desk/readers",
    "reader": "/desk/readers/{reader}",
    "reader-erase": "/desk/readers/{reader}/erase",
    "schedule": "/desk/schedule",
    "ops": "/desk/ops",
    "staff": "/desk/staff",
    "audit": "/desk/audit",
    "api": "/desk/api",
    "totp": "/desk/account/totp",
}


def one_issue(rt: Runtime) -> None:
    now = utcnow()
    with unit_of_work(rt.sessions) as db:
        for role in ("editor", "chief-editor", "admin"):
            staff_account(db, f"{role}@example.com", role)
        for n in (1, 2):
            article(db, now - timedelta(hours=n), title=f"گزارش‌های شمارهٔ {n}")
        assert build_issue(db, rt.settings, now).issue is not None


def tab(browser: Browser, width: int) -> Page:
    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  is_mobile=width < 600, has_touch=width < 600, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def status(rt: Runtime) -> IssueStatus:
    with rt.sessions() as db:
        return review.find(db, 1).status


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_editor_asks_for_review_and_a_chief_editor_approves_on_the_issue_page(
        desk_site: tuple[str, Runtime], browser: Browser, width: int) -> None:
    base, rt = desk_site
    one_issue(rt)
    editor = tab(browser, width)
    log_in(editor, base, "editor@example.com", PASSWORD)
    editor.goto(base + "/desk/issues/1")
    editor.click("#review-panel button:has-text('درخواست بازبینی')")  # the panel htmx loaded
    editor.wait_for_selector("#review-panel >> text=درخواست بازبینی ثبت شد")
    assert status(rt) is IssueStatus.IN_REVIEW
    assert editor.locator("#review-panel button:has-text('تأیید')").count() == 0  # not an editor's move
    assert editor.locator("[id='review-panel']").count() == 1
    editor.context.close()

    chief = tab(browser, width)
    log_in(chief, base, "chief-editor@example.com", PASSWORD)
    chief.goto(base + "/desk/issues/1")
    chief.click("#review-panel button:has-text('تأیید')")
    chief.wait_for_selector("#review-panel >> text=شماره تأیید شد")
    assert status(rt) is IssueStatus.APPROVED
    assert "درخواست بازبینی" in chief.inner_text("#review-panel")  # the history names each move
    assert_fits_the_screen(chief)
    assert axe_violations(chief) == []
    shot(chief, "desk-issue-approved")
    chief.context.close()


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_every_desk_page_fits_the_screen_and_passes_axe(
        desk_site: tuple[str, Runtime], browser: Browser, width: int) -> None:
    base, rt = desk_site
    one_issue(rt)
    with unit_of_work(rt.sessions) as db:
        reader = store.subscribe(db, "reader@example.com", store.Consent("web:test"), utcnow()).subscriber_id
    page = tab(browser, width)
    page.goto(base + "/desk/login")
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-page-login")
    log_in(page, base, "admin@example.com", PASSWORD)
    for name, path in PAGES.items():
        answer = page.goto(base + path.format(reader=reader))
        assert answer is not None and answer.status == 200, name
        page.wait_for_load_state("networkidle")  # the panels htmx loads
        assert page.evaluate("document.documentElement.dir") == "rtl", name
        assert_fits_the_screen(page)
        assert axe_violations(page) == [], name
        shot(page, f"desk-page-{name}")
    page.context.close()
