"""The rendered issue in headless Chromium at phone (375 px) and desktop (600 px) width.

The email is opened from its HTML alone with every network request refused (an email
client shows it without our server). Screenshots go to tests/artifacts/ for people.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Route
from sqlalchemy.orm import Session

from service.articles.ingest import make_article, upsert_articles
from service.digests.build import build_issue
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL, Personalizer
from service.runtime import Runtime
from service.settings import Settings
from service.subscribers.emails import render_confirmation
from tests.conftest import ARTIFACTS
from tests.digests.factories import LONG_SUMMARY
from tests.support.browser import launched_chromium, needs_chromium

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


def issue_html(session: Session) -> str:
    settings = Settings(environment="test", public_url="http://chapar.test")
    items = [make_article(url="https://news.example.com/short", title="خبر کوتاه",
                          summary="یک خط.", published_at=NOW - timedelta(minutes=1), source="t")]
    for i in range(5):
        items.append(make_article(
            url=f"https://news.example.com/{i}", title=f"گزارش‌های هفته دربارهٔ نشست COP31 در Baku ({i})",
            summary=LONG_SUMMARY * 2, section="بین‌الملل", published_at=NOW - timedelta(hours=i + 1),
            source="t", image_url=f"https://news.example.com/{i}.jpg" if i == 0 else None,
        ))
    upsert_articles(session, items, NOW)
    built = build_issue(session, settings, NOW)
    assert built.issue is not None
    return Personalizer(built.issue.html).fill({UNSUBSCRIBE_URL: "http://chapar.test/u/x",
                                                PREFERENCES_URL: "http://chapar.test/p/x"})


@pytest.mark.parametrize("width", [375, 600])
def test_article_text_is_right_to_left_and_right_aligned(session: Session, browser: Browser,
                                                          width: int) -> None:
    html = issue_html(session)
    page = browser.new_page(viewport={"width": width, "height": 900})
    requested: list[str] = []

    def refuse(route: Route) -> None:
        requested.append(route.request.url)
        route.abort()

    page.route("**/*", refuse)  # nothing leaves this machine, as in a client with images off
    page.set_content(html, wait_until="load")
    try:
        styles = page.eval_on_selector_all(
            "td.article h2, td.article p.summary, td.article p.meta",
            "els => els.map(e => [getComputedStyle(e).direction, getComputedStyle(e).textAlign])",
        )
        assert len(styles) == 18
        assert all(style == ["rtl", "right"] for style in styles), styles
        # A short title sits at the right edge of its cell, not the left.
        box = page.eval_on_selector(
            "td.article h2 a",
            "a => { const c = a.closest('td').getBoundingClientRect(); const r = a.getBoundingClientRect();"
            " const pad = parseFloat(getComputedStyle(a.closest('td')).paddingRight);"
            " return [c.right - pad - r.right, r.left - c.left]; }",
        )
        gap_right, gap_left = box
        assert abs(gap_right) < 2 and gap_left > 100, box
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"digest-{width}.png"), full_page=True)
    finally:
        page.close()
    assert all(url.startswith("https://news.example.com/") for url in requested)


STYLE_ELEMENT = re.compile(r"<style\b[^>]*>.*?</style>", re.DOTALL | re.IGNORECASE)


def without_style_elements(html: str) -> str:
    """The email as a client that drops <style> shows it: inline styles only."""
    stripped = STYLE_ELEMENT.sub("", html)
    assert "<style" not in stripped.lower()
    return stripped


@pytest.mark.parametrize("email", ["digest", "confirmation"])
@pytest.mark.parametrize("width", [375, 1280])
def test_the_layout_is_fluid_without_any_style_element(session: Session, runtime: Runtime,
                                                        browser: Browser, email: str,
                                                        width: int) -> None:
    """Gmail's mobile client for other accounts and Outlook drop @media: inline styles must fit."""
    html = issue_html(session) if email == "digest" else render_confirmation(runtime, 4242, None).html
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.route("**/*", lambda route: route.abort())
    page.set_content(without_style_elements(html), wait_until="load")
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        container = page.eval_on_selector("table.container", "t => t.getBoundingClientRect().width")
        if width >= 616:  # 600px and the wrapper's 8px on each side
            assert container == 600
        else:
            assert container <= width
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{email}-no-style-{width}.png"), full_page=True)
    finally:
        page.close()
