"""The reader pages in a real headless Chromium: right-to-left, the forms submit, screenshots.

Screenshots at phone and desktop width are saved under tests/artifacts/ for people to
look at; the assertions check what a reader would notice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status
from service.tokens import Purpose
from service.web.app import create_app
from tests.conftest import ARTIFACTS, emptied_runtime
from tests.subscribers.factories import confirm, confirm_token
from tests.support.browser import OTHER_NAME, launched_chromium, needs_chromium, serving
from tests.support.network import free_port

WIDTHS = {"phone": 375, "desktop": 1280}

pytestmark = needs_chromium


@contextmanager
def serving_site(sqlite_url: str, tmp_path: Path, public_url: str | None = None,
                 ) -> Iterator[tuple[str, Runtime]]:
    """The real app served by uvicorn on a free 127.0.0.1 port, on the embedded database.

    Its CHAPAR_PUBLIC_URL is the address it is served on, unless `public_url` ("{port}"
    filled in) names it otherwise.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with emptied_runtime(tmp_path, database_url=sqlite_url,
                         public_url=(public_url or base).format(port=port)) as rt, \
            serving(create_app(rt), port):
        yield base, rt


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    with serving_site(sqlite_url, tmp_path) as served_site:
        yield served_site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    width = WIDTHS[request.param]
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  is_mobile=width < 600, has_touch=width < 600,
                                  device_scale_factor=2 if width < 600 else 1)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    # Whatever the Content-Security-Policy blocks, Chromium reports on the console.
    blocked: list[str] = []
    tab.on("console", lambda message: blocked.append(message.text)
           if "Content Security Policy" in message.text else None)
    yield tab
    context.close()
    assert blocked == [], blocked


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = ARTIFACTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def direction(page: Page, selector: str) -> str:
    value: str = page.eval_on_selector(selector, "e => getComputedStyle(e).direction")
    return value


def assert_fits_the_screen(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def test_subscribe_page_is_rtl_and_the_form_submits(site: tuple[str, Runtime], page: Page) -> None:
    base, rt = site
    page.goto(base + "/")
    assert direction(page, "body") == "rtl"
    assert direction(page, "h1") == "rtl"
    assert direction(page, "#email") == "ltr"  # an address is typed left to right
    honeypot = page.locator(".hp:has(#website)").bounding_box()
    # People never see it (bots read the HTML); an offset far to the left would make an
    # RTL page scroll sideways, so it is clipped in place instead.
    assert honeypot is None or (honeypot["width"] <= 1 and honeypot["height"] <= 1)
    assert_fits_the_screen(page)
    shot(page, "subscribe")

    page.fill("#email", "Browser.Reader@Example.com")
    page.click("button[type=submit]")
    page.wait_for_selector("text=یک قدم مانده است")
    assert direction(page, "body") == "rtl"
    assert_fits_the_screen(page)
    shot(page, "subscribed")
    with rt.sessions() as session:
        subscriber = store.find_by_email(session, "browser.reader@example.com")
        assert subscriber is not None and subscriber.status is Status.PENDING
        assert subscriber.consent_source == "web:subscribe-page"


def test_a_bad_address_shows_the_persian_error_in_place(site: tuple[str, Runtime], page: Page) -> None:
    base, _ = site
    page.goto(base + "/subscribe")
    page.fill("#email", "not an address")
    page.click("button[type=submit]")
    alert = page.wait_for_selector("[role=alert]")
    assert alert is not None and "درست نیست" in alert.inner_text()
    assert direction(page, "[role=alert]") == "rtl"
    assert page.input_value("#email") == "not an address"  # fix the typo, don't retype
    shot(page, "subscribe-error")


def test_unsubscribe_page_is_rtl_and_one_press_unsubscribes(site: tuple[str, Runtime],
                                                            page: Page) -> None:
    base, rt = site
    with unit_of_work(rt.sessions) as session:
        sid = store.subscribe(session, "leaving@example.com", store.Consent("web:test"),
                              utcnow()).subscriber_id
        confirm(session, sid)
    token = rt.tokens.lasting(Purpose.UNSUBSCRIBE, sid)
    page.goto(f"{base}/unsubscribe/{token}")
    assert direction(page, "body") == "rtl" and direction(page, "h1") == "rtl"
    assert_fits_the_screen(page)
    shot(page, "unsubscribe")

    page.click("button[type=submit]")
    page.wait_for_selector("text=عضویت شما لغو شد")
    assert direction(page, "body") == "rtl"
    assert page.locator("button", has_text="دوباره عضو می‌شوم").count() == 1
    shot(page, "unsubscribed")
    with rt.sessions() as session:
        subscriber = store.find_by_email(session, "leaving@example.com")
        assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED


def test_confirm_preferences_and_embed_pages_are_rtl(site: tuple[str, Runtime], page: Page) -> None:
    base, rt = site
    with unit_of_work(rt.sessions) as session:
        sid = store.subscribe(session, "prefs@example.com", store.Consent("web:test"),
                              utcnow()).subscriber_id
    page.goto(f"{base}/confirm/{confirm_token(rt, sid)}")
    assert direction(page, "body") == "rtl"
    shot(page, "confirm")
    page.click("button[type=submit]")
    page.wait_for_selector("text=عضویت شما تأیید شد")
    page.goto(f"{base}/preferences/{rt.tokens.lasting(Purpose.PREFERENCES, sid)}")
    assert direction(page, "dl") == "rtl"
    assert page.locator("dd", has_text="prefs@example.com").count() == 1
    assert_fits_the_screen(page)
    shot(page, "preferences")
    page.goto(f"{base}/embed")
    assert direction(page, "body") == "rtl"
    shot(page, "embed")


def test_forms_post_to_the_public_url_when_the_page_came_by_another_name(
        sqlite_url: str, tmp_path: Path, page: Page) -> None:
    with serving_site(sqlite_url, tmp_path, public_url=f"http://{OTHER_NAME}:{{port}}") as (base, rt):
        page.goto(base + "/")
        page.fill("#email", "other.name@example.com")
        page.click("button[type=submit]")
        page.wait_for_selector("text=یک قدم مانده است")
        assert page.url.startswith(f"http://{OTHER_NAME}:")
        with rt.sessions() as session:
            assert store.find_by_email(session, "other.name@example.com") is not None


@contextmanager
def news_site(html: str) -> Iterator[str]:
    """The news site's article page on another 127.0.0.1 port (another origin)."""
    body = html.encode()

    class Article(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Article)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/news/article.html"
    finally:
        server.shutdown()
        server.server_close()


def test_the_embedded_form_works_inside_the_news_sites_page(site: tuple[str, Runtime], page: Page) -> None:
    base, rt = site
    article = (
        '<!DOCTYPE html><html lang="fa" dir="rtl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="margin:0;font-family:Tahoma"><article><h1>یک خبر</h1><p>متن خبر...</p>'
        f'</article><iframe title="خبرنامه" src="{base}/embed" '
        'style="width:100%;max-width:30rem;height:420px;border:0"></iframe></body></html>'
    )
    with news_site(article) as url:
        page.goto(url)
        frame = page.frame_locator("iframe")
        assert frame.locator("body").evaluate("e => getComputedStyle(e).direction") == "rtl"
        frame.locator("#email").fill("framed.reader@example.com")
        frame.locator("button[type=submit]").click()
        frame.locator("text=یک قدم مانده است").wait_for()
        shot(page, "embed-in-article")
    with rt.sessions() as session:
        subscriber = store.find_by_email(session, "framed.reader@example.com")
        assert subscriber is not None and subscriber.consent_source == "web:embed"
