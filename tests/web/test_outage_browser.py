"""The page a reader sees while the database is unreachable, in a real Chromium at phone width."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import make_settings
from tests.support.browser import axe_violations, launched_chromium, needs_chromium, screenshot, serving
from tests.support.network import free_port

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    """The app served on a free port, its database address one where nothing listens."""
    port = free_port()
    settings = make_settings(tmp_path, public_url=f"http://127.0.0.1:{port}",
                             database_url=f"postgresql+psycopg://chapar@127.0.0.1:{free_port()}/chapar")
    rt = Runtime.from_settings(settings)
    try:
        with serving(create_app(rt), port) as url:
            yield url
    finally:
        rt.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_503_page_reads_right_to_left_at_375_px_without_wcag_violations(
        browser: Browser, base: str, scheme: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, locale="fa-IR",
                                  color_scheme=scheme,  # type: ignore[arg-type]
                                  is_mobile=True, has_touch=True, bypass_csp=True)
    page: Page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(base + "/subscribe")  # the form itself needs no database
        page.fill("input[name=email]", "reader@example.com")
        with page.expect_response(lambda r: r.url.endswith("/subscribe")
                                  and r.request.method == "POST") as answer:
            page.get_by_role("button").first.click()
        response = answer.value
        assert response.status == 503 and response.headers["retry-after"] == "30"
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("dir") == "rtl"
        assert page.locator("h1").inner_text() == "سرویس در دسترس نیست"
        assert "چیزی از درخواست شما ثبت نشد" in page.locator("main, body").first.inner_text()
        assert page.get_by_role("link", name="بازگشت به صفحهٔ عضویت").is_visible()
        # Nothing wider than the phone: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, f"database-unreachable-{scheme}-375")
        violations = axe_violations(page)
        assert violations == [], violations
    finally:
        context.close()
