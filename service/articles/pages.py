"""One article read from its page on the site, for an editor who adds it by URL.

The page is fetched like a feed (service/articles/fetch.py: http(s) only, public
addresses or the listed hosts, every redirect vetted, time and size limits), and
its Open Graph and standard meta tags give the title, summary, image and section.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import lxml.html

from service.articles.fetch import fetch
from service.articles.ingest import ArticleIn, make_article
from service.articles.refresh import feed_policy
from service.settings import Settings

PAGE_SOURCE = "page"


def _meta(document: Any, *names: str) -> str | None:
    for name in names:
        for value in document.xpath(f'//meta[@property="{name}" or @name="{name}"]/@content'):
            if str(value).strip():
                return str(value).strip()
    return None


def _published(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def article_from_page(content: bytes, url: str) -> ArticleIn:
    """The article a page describes; raise ValueError when it names no title."""
    # Most pages are UTF-8 whether or not they say so; lxml would guess Latin-1 without a
    # <meta charset>. Anything else is left to lxml's own detection.
    try:
        markup: str | bytes = content.decode("utf-8")
    except UnicodeDecodeError:
        markup = content
    document = lxml.html.document_fromstring(markup or "<html></html>")
    titles = document.xpath("//title/text()")
    title = _meta(document, "og:title", "twitter:title") or (str(titles[0]) if titles else "")
    return make_article(
        url=url,
        title=title,
        source=PAGE_SOURCE,
        summary=_meta(document, "og:description", "description", "twitter:description") or "",
        image_url=_meta(document, "og:image", "twitter:image"),
        section=_meta(document, "article:section"),
        author=_meta(document, "article:author", "author"),
        published_at=_published(_meta(document, "article:published_time")),
        base_url=url,
    )


def fetch_article_page(url: str, settings: Settings) -> ArticleIn:
    """Fetch `url` under the feed's address policy and read the article it shows.

    Raises FetchRefused, FetchFailed, or ValueError (not an article page).
    """
    result = fetch(url, timeout=settings.feed_timeout_seconds, max_bytes=settings.feed_max_bytes,
                   policy=feed_policy(settings))
    return article_from_page(result.content, result.url)
