"""Choosing the issue's articles at exact instants, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.digests.build import build_issue
from service.digests.choose import NOTHING_NEW, choose_articles
from service.digests.models import Issue, IssueStatus
from service.persian import jalali_date
from service.settings import Settings
from tests.digests.factories import article, sent_issue

FRIDAY = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)  # 08:00 in Tehran
WEEK = timedelta(days=7)
TICK = timedelta(microseconds=1)


def titles(session: Session, now: datetime, **kw: int) -> list[str]:
    options = {"max_articles": 10} | kw
    return [a.title for a in choose_articles(session, now, **options).articles]


def test_newest_first_capped_at_n(session: Session) -> None:
    for hours in range(15):
        article(session, FRIDAY - timedelta(hours=hours), title=f"h{hours}")
    assert titles(session, FRIDAY, max_articles=10) == [f"h{h}" for h in range(10)]


def test_pinned_first_excluded_left_out(session: Session) -> None:
    article(session, FRIDAY - timedelta(hours=1), title="new")
    article(session, FRIDAY - timedelta(hours=2), title="excluded", excluded=True)
    article(session, FRIDAY - timedelta(hours=3), title="pinned", pinned=True)
    assert titles(session, FRIDAY) == ["pinned", "new"]


def test_cap_per_section(session: Session) -> None:
    for i in range(4):
        article(session, FRIDAY - timedelta(hours=i), title=f"sport{i}", section="ورزشی")
    article(session, FRIDAY - timedelta(hours=5), title="economy", section="اقتصاد")
    assert titles(session, FRIDAY, max_per_section=2) == ["sport0", "sport1", "economy"]


def test_future_articles_wait(session: Session) -> None:
    article(session, FRIDAY + TICK, title="tomorrow")
    choice = choose_articles(session, FRIDAY, max_articles=10)
    assert choice.articles == [] and choice.reason == NOTHING_NEW


def test_window_edges_count_each_instant_once(session: Session, tmp_path: object) -> None:
    settings = Settings(environment="test", public_url="http://chapar.test")
    article(session, FRIDAY - WEEK, title="old")
    first = sent_issue(session, settings, FRIDAY - WEEK)
    assert first is not None and first.window_end == FRIDAY - WEEK
    # (previous end, now]: just after the previous end is in; exactly now is in.
    article(session, FRIDAY - WEEK + TICK, title="just after")
    article(session, FRIDAY, title="at the edge")
    article(session, FRIDAY + TICK, title="after the edge")
    second = sent_issue(session, settings, FRIDAY)
    assert second is not None
    assert [a.title for a in second.articles] == ["at the edge", "just after"]
    assert second.window_start == FRIDAY - WEEK and second.window_end == FRIDAY
    third = build_issue(session, settings, FRIDAY + WEEK).issue
    assert third is not None and [a.title for a in third.articles] == ["after the edge"]


def test_the_empty_week_builds_nothing_and_says_why(session: Session) -> None:
    settings = Settings(environment="test")
    article(session, FRIDAY - WEEK - timedelta(hours=1))
    assert sent_issue(session, settings, FRIDAY - WEEK) is not None
    result = build_issue(session, settings, FRIDAY)
    assert result.issue is None and result.reason == NOTHING_NEW


def test_an_article_sent_once_is_never_chosen_again(session: Session) -> None:
    settings = Settings(environment="test")
    pinned = article(session, FRIDAY - WEEK - timedelta(hours=1), title="pinned", pinned=True)
    first = sent_issue(session, settings, FRIDAY - WEEK)
    assert first is not None and [a.title for a in first.articles] == ["pinned"]
    # Edited and re-dated into the next window, it is still the same article.
    pinned.published_at = FRIDAY - timedelta(hours=1)
    article(session, FRIDAY - timedelta(hours=2), title="fresh")
    second = build_issue(session, settings, FRIDAY).issue
    assert second is not None and [a.title for a in second.articles] == ["fresh"]


def test_nowruz_boundary_in_tehran_time(session: Session) -> None:
    """2025-03-20 20:30 UTC is midnight in Tehran: 1 Farvardin 1404 begins."""
    settings = Settings(environment="test")
    nowruz = datetime(2025, 3, 20, 20, 30, tzinfo=UTC)
    article(session, nowruz - TICK, title="last of 1403")
    article(session, nowruz, title="first of 1404")
    built = build_issue(session, settings, nowruz).issue
    assert built is not None
    assert [a.title for a in built.articles] == ["first of 1404", "last of 1403"]
    assert jalali_date(nowruz, settings.tz) == "جمعه ۱ فروردین ۱۴۰۴"
    assert jalali_date(nowruz - TICK, settings.tz) == "پنجشنبه ۳۰ اسفند ۱۴۰۳"
    # Read as UTC it would still be 1403: the text must show the Tehran date.
    assert "۱ فروردین ۱۴۰۴" in built.text and "۳۰ اسفند ۱۴۰۳" in built.text
    assert "۱ فروردین ۱۴۰۴" in built.html


def test_an_article_fetched_after_its_window_closed_goes_out_next_time(session: Session) -> None:
    settings = Settings(environment="test")
    article(session, FRIDAY - WEEK - timedelta(hours=1), title="in time")
    assert sent_issue(session, settings, FRIDAY - WEEK) is not None
    late = article(session, FRIDAY - WEEK - timedelta(minutes=5), title="late")
    late.created_at = FRIDAY - WEEK + timedelta(minutes=10)  # fetched after the cut
    stale = article(session, FRIDAY - WEEK - timedelta(days=3), title="backfilled")
    stale.created_at = FRIDAY - timedelta(days=1)  # far older than a late arrival
    article(session, FRIDAY - timedelta(hours=1), title="new")
    issue = build_issue(session, settings, FRIDAY).issue
    assert issue is not None and [a.title for a in issue.articles] == ["new", "late"]


def test_an_unsent_draft_leaves_its_articles_free_and_is_replaced(session: Session) -> None:
    """An editor's preview on Wednesday must not keep Monday's news out of Friday's issue."""
    settings = Settings(environment="test")
    article(session, FRIDAY - timedelta(days=4), title="monday")
    preview = build_issue(session, settings, FRIDAY - timedelta(days=2)).issue
    assert preview is not None and preview.number == 1
    article(session, FRIDAY - timedelta(hours=3), title="friday")
    result = build_issue(session, settings, FRIDAY)
    assert result.issue is not None and result.replaced == (1,)
    assert result.issue.number == 1  # readers never see a gap in the numbers
    assert [a.title for a in result.issue.articles] == ["friday", "monday"]
    assert session.scalars(select(Issue)).all() == [result.issue]


def test_a_draft_cancelled_before_sending_gives_its_articles_back(session: Session) -> None:
    settings = Settings(environment="test")
    article(session, FRIDAY - timedelta(days=1), title="kept")
    draft = build_issue(session, settings, FRIDAY - timedelta(hours=12)).issue
    assert draft is not None
    draft.status = IssueStatus.CANCELLED
    session.flush()
    again = build_issue(session, settings, FRIDAY).issue
    assert again is not None and [a.title for a in again.articles] == ["kept"]


def test_the_first_issue_looks_back_one_week(session: Session) -> None:
    """A new installation's feed still lists old articles; the first issue carries this week's."""
    settings = Settings(environment="test")
    article(session, FRIDAY - timedelta(days=21), title="three weeks old")
    article(session, FRIDAY - WEEK - TICK, title="a week and a moment")
    article(session, FRIDAY - WEEK + timedelta(hours=1), title="six days old")
    issue = build_issue(session, settings, FRIDAY).issue
    assert issue is not None and [a.title for a in issue.articles] == ["six days old"]
    assert issue.window_start == FRIDAY - WEEK and issue.window_end == FRIDAY


def test_after_a_long_pause_the_window_starts_one_week_back(session: Session) -> None:
    settings = Settings(environment="test")
    article(session, FRIDAY - 5 * WEEK - timedelta(hours=1), title="sent long ago")
    assert sent_issue(session, settings, FRIDAY - 5 * WEEK) is not None
    article(session, FRIDAY - 3 * WEEK, title="during the pause")
    late = article(session, FRIDAY - 5 * WEEK - timedelta(minutes=5), title="late long ago")
    late.created_at = FRIDAY - timedelta(hours=2)
    article(session, FRIDAY - timedelta(days=2), title="this week")
    issue = build_issue(session, settings, FRIDAY).issue
    assert issue is not None and [a.title for a in issue.articles] == ["this week"]
    assert issue.window_start == FRIDAY - WEEK


def test_the_lookback_is_a_setting(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAPAR_DIGEST_MAX_LOOKBACK_DAYS", "30")
    settings = Settings(environment="test")
    article(session, FRIDAY - timedelta(days=21), title="three weeks old")
    issue = build_issue(session, settings, FRIDAY).issue
    assert issue is not None and [a.title for a in issue.articles] == ["three weeks old"]
    assert issue.window_start == FRIDAY - timedelta(days=30)
