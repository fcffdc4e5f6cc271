"""The editor's hand on the next issue: pin an article to the top, or keep one out."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles.models import Article


class NoSuchArticle(LookupError):
    pass


def recent_articles(session: Session, limit: int = 30) -> list[Article]:
    """The newest articles, for choosing what to pin or exclude."""
    query = select(Article).order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)
    return list(session.scalars(query))


def mark(session: Session, article_id: int, *, pinned: bool | None = None,
         excluded: bool | None = None) -> Article:
    """Set an article's pinned and/or excluded flag; an excluded article is never pinned."""
    article = session.get(Article, article_id)
    if article is None:
        raise NoSuchArticle(f"there is no article {article_id}")
    if pinned is not None:
        article.pinned = pinned
        if pinned:
            article.excluded = False
    if excluded is not None:
        article.excluded = excluded
        if excluded:
            article.pinned = False
    session.flush()
    return article
