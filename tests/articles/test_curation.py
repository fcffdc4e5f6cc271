"""Pinning and excluding articles, and what the next issue makes of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from service.articles.curation import NoSuchArticle, mark, recent_articles
from service.digests.choose import choose_articles
from tests.digests.factories import article

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


def test_pin_and_exclude_exclude_each_other_and_steer_the_choice(session: Session) -> None:
    a = article(session, NOW - timedelta(hours=1), title="a")
    b = article(session, NOW - timedelta(hours=2), title="b")
    c = article(session, NOW - timedelta(hours=3), title="c")
    mark(session, c.id, pinned=True)
    mark(session, a.id, excluded=True)
    assert [x.title for x in choose_articles(session, NOW, max_articles=10).articles] == ["c", "b"]
    mark(session, c.id, excluded=True)
    assert (c.pinned, c.excluded) == (False, True)
    mark(session, a.id, pinned=True)
    assert (a.pinned, a.excluded) == (True, False)
    assert [x.title for x in choose_articles(session, NOW, max_articles=10).articles] == ["a", "b"]
    assert [x.title for x in recent_articles(session)] == ["a", "b", "c"]
    assert b.pinned is False


def test_marking_an_unknown_article_says_so(session: Session) -> None:
    with pytest.raises(NoSuchArticle):
        mark(session, 999_999, pinned=True)
