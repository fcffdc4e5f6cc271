"""Editing one issue: order, lead story, exclusions, text, grouping, rebuild, add by URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles.models import Article
from service.digests import editing
from service.digests.build import build_issue
from service.digests.editing import EditRefused
from service.digests.models import Issue, IssueStatus, ScheduleSlot
from service.runtime import Runtime
from service.settings import Settings
from service.staff.audit import CLI
from service.staff.models import AuditEntry
from tests.articles.feedserver import Route, feed_server
from tests.conftest import make_settings
from tests.digests.factories import article

NOW = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def draft(session: Session, settings: Settings, count: int = 3, **kwargs: object) -> Issue:
    for n in range(count):
        article(session, NOW - timedelta(hours=n + 1), title=f"خبر {n + 1}", **kwargs)  # type: ignore[arg-type]
    issue = build_issue(session, settings, NOW).issue
    assert issue is not None
    return issue


def titles(issue: Issue) -> list[str]:
    return [item.title for item in editing.ordered_items(issue)]


def body(issue: Issue) -> str:
    """The HTML after the masthead: the title, preheader and subject also name articles."""
    return issue.html.split('role="article"', 1)[1]


def actions(session: Session) -> list[str]:
    return [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_moving_an_article_changes_the_email_order_and_is_audited(session: Session,
                                                                  settings: Settings) -> None:
    issue = draft(session, settings)
    assert titles(issue) == ["خبر 1", "خبر 2", "خبر 3"]
    third = editing.ordered_items(issue)[2]
    editing.move(session, settings, issue, third.id, "up", CLI, NOW)
    assert titles(issue) == ["خبر 1", "خبر 3", "خبر 2"]
    assert body(issue).index("خبر 3") < body(issue).index("خبر 2")  # rendered again at once
    assert actions(session) == ["issue.move"]  # one audit entry per change, through the review workflow
    with pytest.raises(EditRefused):
        editing.move(session, settings, issue, editing.ordered_items(issue)[0].id, "up", CLI, NOW)


def test_the_lead_story_comes_first_with_its_image_and_stays_first(session: Session,
                                                                   settings: Settings) -> None:
    issue = draft(session, settings, image_url="https://news.example.com/img.jpg")
    last = editing.ordered_items(issue)[2]
    editing.set_lead(session, settings, issue, last.id, CLI, NOW)
    assert titles(issue)[0] == "خبر 3"
    assert 'class="content article lead"' in issue.html
    lead_cell = issue.html.split('article lead"', 1)[1].split("</td>", 1)[0]
    assert 'alt="تصویر خبر: خبر 3"' in lead_cell and "lead-title" in lead_cell
    assert body(issue).index("خبر 3") < body(issue).index("خبر 1")
    with pytest.raises(EditRefused):  # nothing moves above the lead
        editing.move(session, settings, issue, editing.ordered_items(issue)[1].id, "up", CLI, NOW)
    editing.set_lead(session, settings, issue, None, CLI, NOW)
    assert "article lead" not in issue.html


def test_excluding_takes_the_article_out_and_keeps_it_out_of_a_rebuild(session: Session,
                                                                       settings: Settings) -> None:
    issue = draft(session, settings)
    second = editing.ordered_items(issue)[1]
    article_id = second.article_id
    editing.exclude(session, settings, issue, second.id, CLI, NOW)
    assert titles(issue) == ["خبر 1", "خبر 3"] and "خبر 2" not in body(issue)
    assert session.get(Article, article_id).excluded  # type: ignore[union-attr]
    rebuilt = editing.rebuild(session, settings, issue, CLI, NOW + timedelta(minutes=5))
    assert rebuilt.number == issue.number and "خبر 2" not in titles(rebuilt)


def test_editing_the_text_sanitises_the_intro_and_a_rebuild_keeps_the_editors_text(
        session: Session, settings: Settings) -> None:
    issue = draft(session, settings)
    editing.set_grouping(session, settings, issue, True, CLI, NOW)
    changed = editing.edit_text(
        session, settings, issue, CLI, NOW, subject="  سلام\r\nخوانندگان  ", preheader="",
        intro="بند اول <script>alert(1)</script><b>پررنگ</b>\n\nبند دوم: https://news.example.com/x?a=1&b=2.")
    assert changed == ["subject", "intro"]
    assert issue.subject == "سلام خوانندگان" and issue.subject_by_editor
    assert issue.intro == "بند اول پررنگ\n\nبند دوم: https://news.example.com/x?a=1&b=2."
    assert "<script" not in issue.html and "alert" not in issue.html
    assert issue.html.count("<p") > 2 and "بند اول پررنگ</p>" in issue.html
    assert '<a href="https://news.example.com/x?a=1&amp;b=2"' in issue.html  # the dot stays out
    assert "issue.text" in actions(session)
    assert editing.edit_text(session, settings, issue, CLI, NOW, subject="سلام خوانندگان") == []

    article(session, NOW + timedelta(minutes=1), title="خبر تازه")
    rebuilt = editing.rebuild(session, settings, issue, CLI, NOW + timedelta(minutes=5))
    assert "خبر تازه" in titles(rebuilt)
    assert rebuilt.subject == "سلام خوانندگان" and rebuilt.intro == issue.intro
    assert rebuilt.group_by_section
    editing.edit_text(session, settings, rebuilt, CLI, NOW, subject="")
    assert rebuilt.subject == editing.automatic_subject(settings, rebuilt)
    assert not rebuilt.subject_by_editor


def test_a_rebuild_keeps_the_lead_and_the_schedule_slot(session: Session, settings: Settings) -> None:
    issue = draft(session, settings)
    lead = editing.ordered_items(issue)[1]
    editing.set_lead(session, settings, issue, lead.id, CLI, NOW)
    slot = ScheduleSlot(slot_at=NOW, issue_id=issue.id, outcome="built", decided_at=NOW)
    session.add(slot)
    session.flush()
    rebuilt = editing.rebuild(session, settings, issue, CLI, NOW + timedelta(minutes=5))
    assert titles(rebuilt)[0] == "خبر 2" and rebuilt.lead_article_id == lead.article_id
    assert slot.issue_id == rebuilt.id


def test_grouping_by_section_puts_headings_in_both_parts(session: Session, settings: Settings) -> None:
    article(session, NOW - timedelta(hours=1), title="خبر ورزشی یک", section="ورزش")
    article(session, NOW - timedelta(hours=2), title="خبر سیاسی", section="سیاست")
    article(session, NOW - timedelta(hours=3), title="خبر ورزشی دو", section="ورزش")
    article(session, NOW - timedelta(hours=4), title="خبر بی‌بخش")
    issue = build_issue(session, settings, NOW).issue
    assert issue is not None and "section-title" not in body(issue)
    editing.set_grouping(session, settings, issue, True, CLI, NOW)
    html = body(issue)
    assert html.index("ورزش</h2>") < html.index("خبر ورزشی دو") < html.index("سیاست</h2>") \
        < html.index("خبر سیاسی") < html.index("دیگر خبرها") < html.index("خبر بی‌بخش")
    text = issue.text
    assert text.index("== ورزش ==") < text.index("۲. خبر ورزشی دو") < text.index("== سیاست ==")
    assert "۴. خبر بی‌بخش" in text


def test_adding_a_known_article_by_url_pins_it_and_puts_it_last(session: Session,
                                                                settings: Settings) -> None:
    issue = draft(session, settings)
    old = article(session, NOW - timedelta(days=30), title="خبر قدیمی")
    item = editing.add_article(session, settings, issue, old, CLI, NOW)
    assert titles(issue)[-1] == "خبر قدیمی" and item.position == 4 and old.pinned
    assert editing.known_article(session, old.url + "?utm_source=x") is old
    with pytest.raises(EditRefused):
        editing.add_article(session, settings, issue, old, CLI, NOW)


def test_an_issue_whose_send_began_cannot_change(session: Session, settings: Settings) -> None:
    issue = draft(session, settings)
    issue.status = IssueStatus.SENDING
    issue.send_started_at = NOW
    with pytest.raises(EditRefused) as refused:
        editing.edit_text(session, settings, issue, CLI, NOW, subject="تازه")
    assert "ارسال" in refused.value.persian
    with pytest.raises(EditRefused):
        editing.rebuild(session, settings, issue, CLI, NOW)


PAGE = """<!doctype html><html lang="fa"><head><title>عنوان برگه</title>
<meta property="og:title" content="خبر افزوده با نشانی">
<meta property="og:description" content="خلاصهٔ <b>خبر</b>">
<meta property="og:image" content="/images/lead.jpg">
<meta property="article:section" content="اقتصاد">
<meta property="article:published_time" content="2026-11-26T10:00:00+03:30">
</head><body><p>متن</p></body></html>"""


def test_adding_by_url_reads_the_page_under_the_feed_policy(runtime: Runtime) -> None:
    with feed_server() as server:
        server.routes["/news/42?utm_source=tg"] = Route(body=PAGE.encode())
        url = server.url("/news/42?utm_source=tg")
        with runtime.sessions.begin() as session:
            draft(session, runtime.settings, 2)
            number = session.scalars(select(Issue.number)).one()
        with pytest.raises(EditRefused):  # 127.0.0.1 is not a public address
            editing.add_by_url(runtime, number, url, CLI, NOW)
        allowed = Runtime.from_settings(runtime.settings.model_copy(
            update={"feed_allowed_hosts": "127.0.0.1"}))
        try:
            assert editing.add_by_url(allowed, number, url, CLI, NOW) == "خبر افزوده با نشانی"
        finally:
            allowed.close()
    with runtime.sessions() as session:
        issue = editing.find_issue(session, number)
        last = editing.ordered_items(issue)[-1]
        assert last.section == "اقتصاد" and last.url == server.url("/news/42")
        assert last.image_url == server.url("/images/lead.jpg")
        assert "خبر افزوده با نشانی" in issue.html
    with pytest.raises(EditRefused):  # now known: the same article is not added twice
        editing.add_by_url(runtime, number, server.url("/news/42"), CLI, NOW)
