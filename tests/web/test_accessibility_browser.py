"""axe-core (WCAG 2.x A and AA) on every reader page and both emails: light and dark, phone and desktop.

One Chromium and one served app for the whole module. Each page is reached as a
reader reaches it (a GET, or the form's POST); the emails are opened from their
rendered HTML alone, as a mail client shows them. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, Route
from sqlalchemy import select

from service.articles.ingest import make_article, upsert_articles
from service.clock import utcnow
from service.db import unit_of_work
from service.digests.build import build_issue
from service.digests.models import Issue, IssueStatus
from service.mail.placeholders import with_sample_links
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.emails import render_confirmation
from service.subscribers.models import Status, Subscriber
from service.tokens import Purpose
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.digests.factories import LONG_SUMMARY
from tests.subscribers.factories import confirm, confirm_token
from tests.support.browser import (
    axe_violations,
    launched_chromium,
    needs_chromium,
    screenshot,
    serving,
)
from tests.support.network import free_port

pytestmark = needs_chromium

WIDTHS = [375, 1280]
SCHEMES = ["light", "dark"]


@dataclass(frozen=True)
class Site:
    base: str
    rt: Runtime
    issue_number: int


@dataclass(frozen=True)
class Visit:
    """Where a page is: a path on the site, POSTed as a form when `form` is given."""

    path: str
    form: dict[str, str] | None = None


_addresses = iter(range(1, 10_000))


def subscriber(rt: Runtime, status: Status = Status.PENDING) -> int:
    """A new subscriber in `status`, as the site's own functions leave one."""
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        sid = store.subscribe(session, f"reader{next(_addresses)}@example.com",
                              store.Consent("web:test"), now).subscriber_id
        if status is not Status.PENDING:
            confirm(session, sid, now)
        if status is Status.UNSUBSCRIBED:
            store.unsubscribe(session, sid, now, "test")
        elif status is Status.BOUNCED:
            store.mark_bounced(session, sid, now, "550 no such user")
        elif status is Status.COMPLAINED:
            row = session.get(Subscriber, sid)
            assert row is not None
            row.status = Status.COMPLAINED
    return sid


def preferences(rt: Runtime, status: Status) -> Visit:
    return Visit(f"/preferences/{rt.tokens.lasting(Purpose.PREFERENCES, subscriber(rt, status))}")


PAGES: dict[str, Callable[[Site], Visit]] = {
    "subscribe": lambda s: Visit("/"),
    "subscribe-error": lambda s: Visit("/subscribe", {"email": "not an address", "source": "subscribe-page"}),
    "embed": lambda s: Visit("/embed"),
    "subscribed": lambda s: Visit("/subscribe", {"email": f"new{next(_addresses)}@example.com"}),
    "confirm": lambda s: Visit(f"/confirm/{confirm_token(s.rt, subscriber(s.rt))}"),
    "confirmed": lambda s: Visit(f"/confirm/{confirm_token(s.rt, subscriber(s.rt))}", {}),
    "unsubscribe": lambda s: Visit(
        f"/unsubscribe/{s.rt.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber(s.rt, Status.CONFIRMED))}"),
    "unsubscribed": lambda s: Visit(
        f"/unsubscribe/{s.rt.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber(s.rt, Status.CONFIRMED))}", {}),
    **{f"preferences-{status.value}": (lambda st: lambda s: preferences(s.rt, st))(status)
       for status in Status},
    "resubscribed": lambda s: Visit(
        preferences(s.rt, Status.UNSUBSCRIBED).path + "/resubscribe", {}),
    "erased": lambda s: Visit(preferences(s.rt, Status.CONFIRMED).path + "/erase", {"confirm": "yes"}),
    "error-invalid-link": lambda s: Visit("/confirm/not-a-real-token"),
    "error-not-found": lambda s: Visit("/no-such-page"),
    "archive": lambda s: Visit("/archive"),
    "archive-issue": lambda s: Visit(f"/archive/{s.issue_number}"),
}
EMAILS = ["digest-email", "confirmation-email"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture(scope="module")
def site(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app on the embedded database, with one issue that went out."""
    port = free_port()
    rt = Runtime.from_settings(make_settings(tmp_path_factory.mktemp("a11y"), database_url=sqlite_url,
                                             public_url=f"http://127.0.0.1:{port}"))
    truncate_all(rt)
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        upsert_articles(session, [
            make_article(url=f"https://news.example.com/{i}", title=f"گزارش‌های هفته دربارهٔ COP31 ({i})",
                         summary=f"<p>{LONG_SUMMARY} <b>iPhone 17</b></p>", section="بین‌الملل",
                         image_url="https://news.example.com/a.jpg" if i == 0 else None,
                         published_at=now - timedelta(hours=i + 1), source="test")
            for i in range(3)
        ], now)
        issue = build_issue(session, rt.settings, now, intro="سلام! خبرهای این هفته.").issue
        assert issue is not None
        issue.status, issue.send_started_at = IssueStatus.SENT, now
        number = issue.number
    try:
        with serving(create_app(rt), port) as base:
            yield Site(base, rt, number)
    finally:
        truncate_all(rt)
        rt.close()


@pytest.fixture(params=[(s, w) for s in SCHEMES for w in WIDTHS],
                ids=[f"{s}-{w}" for s in SCHEMES for w in WIDTHS])
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    scheme, width = request.param
    # bypass_csp: axe is injected as a script, which the pages' policy rightly forbids.
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="fa-IR",
                                  color_scheme=scheme, bypass_csp=True,
                                  is_mobile=width < 600, has_touch=width < 600)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def open_visit(page: Page, base: str, visit: Visit) -> None:
    url = base + visit.path
    if visit.form is not None:
        form = visit.form

        def post(route: Route) -> None:
            route.continue_(method="POST", post_data=urlencode(form),
                            headers=route.request.headers
                            | {"content-type": "application/x-www-form-urlencoded"})

        page.route(url, post, times=1)
    page.goto(url)


def email_html(site: Site, name: str) -> str:
    if name == "confirmation-email":
        sid = subscriber(site.rt)
        with site.rt.sessions() as session:
            row = session.get(Subscriber, sid)
            assert row is not None
            return render_confirmation(site.rt, sid, row.confirm_nonce).html
    with site.rt.sessions() as session:
        html = session.scalars(select(Issue.html).where(Issue.number == site.issue_number)).one()
    return with_sample_links(html, site.rt.settings.public_url)


def assert_no_violations(page: Page, name: str) -> None:
    scheme = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'")
    width = page.viewport_size["width"] if page.viewport_size else 0
    screenshot(page, f"axe-{name}-{scheme}-{width}")
    violations = axe_violations(page)
    assert violations == [], "\n".join(
        f"{v['id']}: {v['help']}\n" + "\n".join(f"  {n['target']}: {n['summary']}" for n in v["nodes"])
        for v in violations
    )


@pytest.mark.parametrize("name", list(PAGES))
def test_reader_page_has_no_wcag_aa_violations(site: Site, page: Page, name: str) -> None:
    open_visit(page, site.base, PAGES[name](site))
    assert page.locator("h1, h2").count() >= 1  # the page itself, not a blank or a crash
    assert_no_violations(page, name)


@pytest.mark.parametrize("name", EMAILS)
def test_email_has_no_wcag_aa_violations(site: Site, page: Page, name: str) -> None:
    page.route("**/*", lambda route: route.abort())  # a mail client with images off
    page.set_content(email_html(site, name), wait_until="load")
    assert_no_violations(page, name)


def test_every_reader_template_is_visited() -> None:
    """A new reader page must be added here, or it is never checked."""
    templates = Path(__file__).resolve().parents[2] / "service" / "web" / "templates"
    names = {p.stem for p in templates.glob("*.html")} - {"base", "_subscribe_form"}
    visited = {"subscribe", "embed", "subscribed", "confirm", "confirmed", "unsubscribe",
               "unsubscribed", "preferences", "erased", "error", "archive"}
    assert names == visited
    assert all(any(key.startswith(n) for key in PAGES) for n in visited)
