"""The ops console in a real headless Chromium during a send, at 375 and 1280 px.

Screenshots of the console go to tests/artifacts/ (ops-console-<width>.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from service.db import unit_of_work
from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.ops.test_console import sending_issue
from tests.staff.factories import PASSWORD, staff_account
from tests.support.browser import axe_violations, needs_chromium, serving
from tests.support.network import free_port
from tests.web.desk.test_desk_browser import log_in, tab
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, direction, shot

__all__ = ["browser"]  # the module-scoped Chromium fixture

pytestmark = needs_chromium


@pytest.fixture
def ops_site(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, public_url=base))
    truncate_all(rt)
    try:
        sending_issue(rt)
        with unit_of_work(rt.sessions) as db:
            staff_account(db, "ops@example.com", "ops")
        with serving(create_app(rt), port):
            yield base, rt
    finally:
        truncate_all(rt)
        rt.close()


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_ops_person_watches_the_send_live_and_pauses_it(
        ops_site: tuple[str, Runtime], browser: Browser, width: int) -> None:
    base, _rt = ops_site
    page = tab(browser, width)
    log_in(page, base, "ops@example.com", PASSWORD)
    page.click("nav >> text=کنسول عملیات")
    page.wait_for_selector("h1:has-text('کنسول عملیات')")
    assert direction(page, "body") == "rtl"
    assert page.locator("progress").get_attribute("value") == "4"
    assert "۴ از ۶" in page.inner_text("#ops-live")
    assert "slow.test" in page.inner_text("#ops-live")  # where mail waits
    assert "در انتظار تلاش دوباره" in page.inner_text("#ops-live")  # why the ETA waits
    assert_fits_the_screen(page)
    shot(page, "ops-console")

    # Live: the panel is read again without reloading the page.
    first = page.inner_text("#ops-read-at")
    page.wait_for_function(
        "before => document.querySelector('#ops-read-at').innerText !== before", arg=first,
        timeout=20_000)

    page.click("summary:has-text('مکث ارسال')")
    page.click("button:has-text('بله، مکث ارسال')")
    page.wait_for_selector("text=ارسال مکث شد")
    assert "مکث" in page.inner_text("#ops-live")
    assert page.locator("summary:has-text('ادامهٔ ارسال')").count() == 1
    shot(page, "ops-console-paused")
    cookies = page.context.cookies()
    page.context.close()

    # axe is injected as a script, which the desk's policy rightly forbids: its own context.
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  bypass_csp=True)
    context.add_cookies(cookies)  # type: ignore[arg-type]
    checked = context.new_page()
    checked.goto(base + "/desk/ops")
    violations = axe_violations(checked)
    assert violations == [], "\n".join(
        f"{v['id']}: {v['help']}: " + ", ".join(str(n["target"]) for n in v["nodes"])
        for v in violations)
    context.close()
