"""Importing readers and reading the list's growth in a real headless Chromium, at 375 and 1280 px.

The desk is served by uvicorn on the embedded setup (SQLite, the filesystem broker) with
a real Celery worker. An admin uploads a CSV, watches the job page update itself until
the import is done, downloads the rejected lines, and opens the growth page.
Screenshots go to tests/artifacts/ (desk-import-*, desk-import-job-*, desk-growth-*).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.staff.factories import PASSWORD, staff_account
from tests.subscribers.factories import confirm
from tests.support.browser import axe_violations, needs_chromium, serving
from tests.support.network import free_port
from tests.support.processes import start_worker
from tests.web.desk.test_desk_browser import log_in
from tests.web.test_pages_browser import WIDTHS, assert_fits_the_screen, browser, direction, shot

__all__ = ["browser"]  # the module-scoped Chromium fixture

pytestmark = needs_chromium


@pytest.fixture
def site_with_worker(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, public_url=base,
                                             import_batch_size=25))
    truncate_all(rt)
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        with serving(create_app(rt), port):
            yield base, rt
    finally:
        worker.stop()
        truncate_all(rt)
        rt.close()


def some_readers(rt: Runtime) -> None:
    """A few weeks of subscriptions, confirmations and one unsubscribe, for the growth page."""
    now = utcnow()
    consent = store.Consent("web:subscribe-page")
    with unit_of_work(rt.sessions) as session:
        for n, days_ago in enumerate((0, 1, 2, 8, 9, 15, 16, 17, 30)):
            when = now - timedelta(days=days_ago)
            sid = store.subscribe(session, f"early{n}@example.com", consent, when).subscriber_id
            if n % 3:
                confirm(session, sid, when + timedelta(hours=2))
            if n == 4:
                store.unsubscribe(session, sid, now, "unsubscribe link")


@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_an_admin_imports_a_csv_watches_it_finish_downloads_the_report_and_reads_growth(
        site_with_worker: tuple[str, Runtime], browser: Browser, tmp_path: Path, width: int) -> None:
    base, rt = site_with_worker
    some_readers(rt)
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
    lines = ["email,name"] + [f"reader{n}@example.com,Reader {n}" for n in range(200)]
    lines[50] = "not-an-address,Broken"  # line 51
    lines.append("early0@example.com,Already here")
    upload = tmp_path / "print-signups.csv"
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # bypass_csp: axe is injected as a script, which the desk's policy rightly forbids.
    page = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                               is_mobile=width < 600, has_touch=width < 600, accept_downloads=True,
                               bypass_csp=True).new_page()
    page.set_default_timeout(20_000)
    log_in(page, base, "boss@example.com", PASSWORD)
    page.click("nav >> text=درون‌ریزی خوانندگان")
    page.wait_for_selector("h1:has-text('درون‌ریزی خوانندگان از پروندهٔ CSV')")
    assert direction(page, "main") == "rtl"
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-import")

    page.set_input_files("#import-file", str(upload))
    page.check("input[name=consent]")
    page.click("form[action='/desk/readers/import'] button[type=submit]")
    page.wait_for_selector("h1:has-text('درون‌ریزی شمارهٔ')")
    assert "/desk/readers/imports/" in page.url
    # The page asks for its figures again by itself until the worker is done.
    page.wait_for_selector("#import-status:has-text('تمام‌شده')", timeout=90_000)
    assert page.inner_text("#import-progress").startswith("۲۰۱ از ۲۰۱ نشانی")
    counts = page.locator("#import-counts td.num").all_inner_texts()
    assert counts == ["۱۹۹", "۱", "۰", "۱"]  # added, already present, erased, rejected
    assert "خوانده‌شده ساعت" in page.inner_text(".read-at")
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-import-job")

    with page.expect_download() as info:
        page.click("#rejected-report")
    saved = tmp_path / f"rejected-{width}.csv"
    info.value.save_as(saved)
    with saved.open(encoding="utf-8-sig", newline="") as stream:
        assert list(csv.reader(stream)) == [
            ["line", "value", "reason_fa", "reason_en"],
            ["51", "not-an-address", "این نشانی ایمیل درست نیست.", "not a valid email address"]]

    page.goto(base + "/desk/readers/import")
    assert page.locator("table >> text=print-signups.csv").count() == 1  # the recent imports

    page.click("nav >> text=رشد فهرست")
    page.wait_for_selector("h1:has-text('رشد فهرست')")
    assert page.locator("svg.counts rect").count() == 3 * 12  # three bars for each of twelve weeks
    assert page.locator("svg.rates rect").count() >= 3
    total = page.locator("#growth-table tfoot td.num").all_inner_texts()
    assert total[:2] == ["۹", "۱۹۹"]  # nine requests in the weeks shown; the 199 this import added
    assert_fits_the_screen(page)
    assert axe_violations(page) == []
    shot(page, "desk-growth")
    page.context.close()
