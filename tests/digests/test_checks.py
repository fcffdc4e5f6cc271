"""The pre-send checks, run on what a reader would really get."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from service.articles.ingest import make_article, upsert_articles
from service.digests import checks
from service.digests.build import build_issue, rerender_issue
from service.digests.checks import ChecksBlocked, blockers, require_passing, run_checks
from service.digests.models import Issue
from service.digests.rendered_checks import GMAIL_CLIP_BYTES, Severity
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.models import AuditEntry
from tests.articles.feedserver import FeedServer, Route, feed_server

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)
ZWNJ = "\u200c"


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    """Settings as a real site has them: https pages, so one-click unsubscribe is complete."""
    settings = runtime.settings.model_copy(update={
        "public_url": "https://chapar.example.com", "from_address": "news@chapar.example.com",
        "from_name": "خبرنامه نمونه", "list_name": "خبرنامه", "feed_timeout_seconds": 3.0})
    return Runtime(settings=settings, engine=runtime.engine, sessions=runtime.sessions,
                   tokens=runtime.tokens)


def add_articles(session: Session, count: int, *, title: str = "گزارش{ZWNJ}ها", url: str = "",
                 summary: str = "<p>خلاصه‌ای کوتاه از خبر.</p>") -> None:
    upsert_articles(session, [make_article(
        url=url.format(i=i) if url else f"https://news.example.com/a/{i}",
        title=f"{title.format(ZWNJ=ZWNJ)} {i}", summary=summary,
        image_url=f"https://news.example.com/img/{i}.jpg" if i == 0 else None,
        section="سیاسی", author="نویسنده", published_at=NOW - timedelta(hours=i + 1), source="test",
    ) for i in range(count)], NOW)


def built(session: Session, rt: Runtime, count: int = 3, **kwargs: str) -> Issue:
    add_articles(session, count, **kwargs)
    issue = build_issue(session, rt.settings, NOW).issue
    assert issue is not None
    issue.subject = "خبرنامه، شمارهٔ ۱"
    return issue


def codes(report: checks.CheckReport) -> dict[str, Severity]:
    return {i.code: i.severity for i in report.items}


def test_a_good_issue_passes_with_no_blocker_and_no_warning(session: Session, rt: Runtime) -> None:
    issue = built(session, rt)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert [i for i in report.items if i.severity is not Severity.NOTE] == []
    assert not report.blocked and report.clip.cut_at is None
    assert report.links_total == 4 and report.links_pending == 4  # three articles and an image


def test_tracked_links_are_checked_as_their_articles_and_weighed_as_sent(
        session: Session, rt: Runtime) -> None:
    issue = built(session, rt)
    plain = run_checks(rt, session, issue, NOW, fetch_links=False)
    rt.settings.track_clicks = "per-reader"  # the longest links: one token per reader
    tracked = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert [i for i in tracked.items if i.severity is not Severity.NOTE] == []
    assert tracked.links_total == plain.links_total == 4  # the articles' own URLs, not /r/
    # Seven article links in the HTML (title and «read more», and the lead's image), each
    # now a redirect with a token: the size is the size as sent.
    assert tracked.clip.html_bytes > plain.clip.html_bytes + 7 * 60


def test_a_digest_over_102_kb_is_blocked_and_says_where_gmail_cuts(session: Session,
                                                                   rt: Runtime) -> None:
    rt.settings.digest_max_articles = 120
    long_summary = "<p>" + "گزارش‌ها نشان می‌دهد که نشست امروز برگزار شد. " * 5 + "</p>"
    issue = built(session, rt, 120, summary=long_summary)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert report.clip.html_bytes > GMAIL_CLIP_BYTES
    assert report.clip.cut_at == GMAIL_CLIP_BYTES
    (clipped,) = blockers(report)
    assert clipped.code == "size.clipped" and "Gmail" in clipped.fa
    # The last article wholly before the cut, and the first one after it, in issue order.
    titles = [a.title for a in issue.articles]
    assert report.clip.last_visible in titles and report.clip.first_cut in titles
    assert titles.index(report.clip.first_cut) == titles.index(report.clip.last_visible) + 1
    assert report.clip.last_visible in clipped.detail
    with pytest.raises(ChecksBlocked) as raised:
        require_passing(rt, session, issue, NOW)
    assert str(raised.value).startswith("ارسال متوقف شد: HTML نامه")
    assert "| send blocked by the checks: the HTML is" in str(raised.value)


def test_90_kb_warns_without_blocking(session: Session, rt: Runtime) -> None:
    rt.settings.digest_max_articles = 120
    long_summary = "<p>" + "گزارش‌ها نشان می‌دهد که نشست امروز برگزار شد. " * 5 + "</p>"
    issue = built(session, rt, 120, summary=long_summary)
    while len(issue.articles) > 1:
        report = run_checks(rt, session, issue, NOW, fetch_links=False)
        if report.clip.html_bytes < 90 * 1024:
            pytest.fail("no size between 90 and 102 KB reached")
        if report.clip.cut_at is None:
            break
        issue.articles.pop()
        rerender_issue(session, issue, rt.settings)
    assert codes(report)["size.near_clip"] is Severity.WARNING
    assert not report.blocked


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once the socket is


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        s.routes["/ok"] = Route(body=b"<html>ok</html>", headers={"Content-Type": "text/html"})
        yield s


def test_a_link_to_a_closed_port_is_a_warning_naming_its_article(
        session: Session, rt: Runtime, closed_port: int, server: FeedServer) -> None:
    rt.settings.feed_allowed_hosts = "127.0.0.1"  # the guard would refuse loopback otherwise
    issue = built(session, rt, 2)
    dead, alive = issue.articles
    dead.url = f"http://127.0.0.1:{closed_port}/gone"
    alive.url = server.url("/ok")
    dead.image_url = server.url("/ok")  # every fetched link stays on 127.0.0.1
    rerender_issue(session, issue, rt.settings)
    report = run_checks(rt, session, issue, NOW, fetch_links=True)
    broken = [i for i in report.items if i.code == "links.broken"]
    assert [b.severity for b in broken] == [Severity.WARNING]
    assert dead.title in broken[0].detail and f":{closed_port}/gone" in broken[0].detail
    assert [path for path, _ in server.requests] == ["/ok"]  # fetched once, shared by two links
    assert not report.blocked


def test_the_guard_refuses_loopback_links_unless_allowed(session: Session, rt: Runtime,
                                                         server: FeedServer) -> None:
    issue = built(session, rt, 1)
    issue.articles[0].url = issue.articles[0].image_url = server.url("/ok")
    rerender_issue(session, issue, rt.settings)
    report = run_checks(rt, session, issue, NOW, fetch_links=True)
    assert codes(report)["links.refused"] is Severity.WARNING
    assert server.requests == []


def tampered(session: Session, rt: Runtime, old: str, new: str) -> Issue:
    issue = built(session, rt, 2)
    assert old in issue.html
    issue.html = issue.html.replace(old, new, 1)
    return issue


def test_an_image_without_alt_is_named(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 2)
    issue.html = issue.html.replace('alt="تصویر خبر', 'data-alt="x', 1)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    (missing,) = [i for i in report.items if i.code == "images.alt"]
    assert missing.severity is Severity.WARNING
    assert issue.articles[0].title in missing.detail and "/img/0.jpg" in missing.detail


def test_a_relative_link_is_a_blocker_naming_its_article(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 2)
    issue.articles[1].url = "/a/relative"
    rerender_issue(session, issue, rt.settings)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    relative = [i for i in report.items if i.code == "links.relative"]
    assert relative and all(i.severity is Severity.BLOCKER for i in relative)
    assert issue.articles[1].title in relative[0].detail and "/a/relative" in relative[0].detail


@pytest.mark.parametrize("leftover", ["{{ title }}", "{% endif %}", "%%CHAPAR_SOMETHING%%"])
def test_leftover_template_syntax_is_a_blocker(session: Session, rt: Runtime, leftover: str) -> None:
    issue = built(session, rt, 2)
    issue.html = issue.html.replace("خواندن خبر", f"خواندن خبر {leftover}", 1)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert codes(report)["placeholders"] is Severity.BLOCKER
    assert report.blocked


def test_a_marker_left_in_the_subject_is_a_blocker(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 1)
    issue.subject = "خبرنامه {{ number }}"
    assert codes(run_checks(rt, session, issue, NOW, fetch_links=False))["placeholders"] \
        is Severity.BLOCKER


def test_an_empty_issue_is_a_blocker(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 1)
    issue.articles.clear()
    rerender_issue(session, issue, rt.settings)
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert codes(report)["articles.none"] is Severity.BLOCKER


def test_an_empty_subject_blocks_and_a_long_one_warns(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 1)
    issue.subject = "   "
    assert codes(run_checks(rt, session, issue, NOW, fetch_links=False))["subject.missing"] \
        is Severity.BLOCKER
    issue.subject = "خبرنامهٔ هفتگی: " + "گزارش‌های ویژهٔ این هفته از سراسر کشور " * 3
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert codes(report)["subject.long"] is Severity.WARNING and not report.blocked


# Each RTL-EMAIL rule the checks apply, broken in the rendered output: (what to replace,
# with what, the code that must appear).
RTL_BREAKS = [
    ('<html lang="fa" dir="rtl"', '<html lang="en"', "rtl.root"),
    ('role="article"', 'role="main"', "rtl.root"),
    ('<td class="content masthead" dir="rtl"', '<td class="content masthead"', "rtl.cells"),
    ('style="direction:rtl; text-align:right;"', 'style="direction:ltr;"', "rtl.ltr_container"),
    ('<span dir="ltr">', "<bdi>", "rtl.isolation"),
    ('<span dir="ltr">', "<span>", "rtl.latin"),
    ("Vazirmatn, Tahoma, 'Segoe UI', Arial, sans-serif", "Arial", "rtl.fonts"),
    ('width="536"', "", "images.width"),
    ("!important", "", "css.media"),
    ('<div class="preheader"', '<div class="intro"', "preheader"),
    ("سیاسی", "سياسي", "rtl.arabic_forms"),
    ('/a/0"', '/a/۰"', "rtl.digits_in_url"),
    ("گزارش\u200cها", "گزارش ها", "rtl.zwnj"),
    ("خواندن خبر", "&#1582;واندن خبر", "rtl.entities"),
    ("لغو عضویت</a>", "</a>", None),  # the visible link is still there: nothing to report
    ('href="%%CHAPAR_UNSUBSCRIBE_URL%%"', 'href="https://chapar.example.com/"', "unsubscribe"),
]


@pytest.mark.parametrize(("old", "new", "code"), RTL_BREAKS, ids=[f"{c}:{o[:18]}" for o, _, c in RTL_BREAKS])
def test_each_rtl_email_rule_has_a_failing_case(session: Session, rt: Runtime, old: str, new: str,
                                                code: str | None) -> None:
    issue = built(session, rt, 2, title="گزارش{ZWNJ}ها iPhone")
    assert old in issue.html, old
    issue.html = issue.html.replace(old, new)
    found = codes(run_checks(rt, session, issue, NOW, fetch_links=False))
    if code is None:
        assert not {c for c, s in found.items() if s is not Severity.NOTE}
    else:
        assert code in found, found


def test_a_style_block_over_16_kb_warns(session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 1)
    issue.html = issue.html.replace("</style>", "/*" + "x" * 16 * 1024 + "*/</style>", 1)
    assert "css.style_size" in codes(run_checks(rt, session, issue, NOW, fetch_links=False))


def test_mime_rules_are_checked_on_the_bytes(session: Session, rt: Runtime) -> None:
    from service.digests import rendered_checks

    issue = built(session, rt, 1)
    raw, _ = checks.reader_bytes(rt, session, issue, NOW)
    message = rendered_checks.parse_message(raw)
    html = rendered_checks.html_part(message)
    assert rendered_checks.mime_items(message, raw, html, issue.html) == []
    swapped = raw.replace(b'Content-Type: text/plain; charset="utf-8"', b"Content-Type: text/x-swap")
    found = {i.code for i in rendered_checks.mime_items(rendered_checks.parse_message(swapped),
                                                         swapped, html, issue.html)}
    assert "mime.structure" in found
    qp = raw.replace(b"Content-Transfer-Encoding: base64\r\n\r\nPCFET0",
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\nPCFET0")
    assert "mime.encoding" in {i.code for i in rendered_checks.mime_items(
        rendered_checks.parse_message(qp), qp, html, issue.html)}
    long_header = raw.replace(b"MIME-Version: 1.0", b"X-Long: " + b"a" * 90 + b"\r\nMIME-Version: 1.0")
    assert "mime.headers" in {i.code for i in rendered_checks.mime_items(
        rendered_checks.parse_message(long_header), long_header, html, issue.html)}
    no_date = b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"Date:"))
    assert "mime.identity" in {i.code for i in rendered_checks.mime_items(
        rendered_checks.parse_message(no_date), no_date, html, issue.html)}
    no_post = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")
    assert "unsubscribe" in {i.code for i in rendered_checks.mime_items(
        rendered_checks.parse_message(no_post), no_post, html, issue.html)}
    unsigned = b"DKIM-Signature: v=1; h=from:subject:list-unsubscribe;\r\n" + raw
    assert "dkim.headers" in {i.code for i in rendered_checks.mime_items(
        rendered_checks.parse_message(unsigned), unsigned, html, issue.html)}
    assert "rtl.zwnj" in {i.code for i in rendered_checks.mime_items(
        message, raw, html.replace(ZWNJ, "", 1), issue.html)}


def test_an_admin_override_lets_exactly_these_blockers_go_and_is_audited(
        session: Session, rt: Runtime) -> None:
    issue = built(session, rt, 1)
    issue.subject = ""
    report = run_checks(rt, session, issue, NOW, fetch_links=False)
    assert report.blocked
    admin = Actor(None, "admin@example.com", "127.0.0.1")
    checks.override(session, issue, report, admin, NOW, "سردبیر موضوع را تلفنی تأیید کرد")
    again = require_passing(rt, session, issue, NOW)
    assert again.overridden_by == "admin@example.com" and not again.blocked
    entry = session.query(AuditEntry).filter_by(action="issue.checks_override").one()
    assert entry.actor == "admin@example.com" and "subject.missing" in entry.detail
    issue.html = issue.html.replace("خواندن خبر", "خواندن {{ x }}", 1)  # a new blocker
    with pytest.raises(ChecksBlocked):
        require_passing(rt, session, issue, NOW)
    with pytest.raises(ValueError, match="no blockers"):
        checks.override(session, issue, replace(report, items=()), admin, NOW)
