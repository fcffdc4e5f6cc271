"""Untrusted article text made safe: plain titles, small-HTML summaries, canonical URLs.

Feeds and the CMS API both pass through here, so a title can go into a Subject
header and a summary into an email without anything the sender did not mean.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from service.persian import normalize_text, single_line

# The longest summary stored; the digest cuts shorter (CHAPAR_DIGEST_SUMMARY_CHARS).
SUMMARY_MAX_CHARS = 2000
TITLE_MAX_CHARS = 300
# A small allow-list: emphasis, line breaks and links. Anything else is stripped,
# and <script>/<style> lose their content too (nh3's default clean_content_tags).
SUMMARY_TAGS = {"a", "b", "strong", "i", "em", "br"}
SUMMARY_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = {"http", "https"}

# Query parameters that only track the click; removing them makes two links to one
# article compare equal.
TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|msclkid|yclid|mc_cid|mc_eid|igshid|_hsenc|_hsmi|ref_src)$",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def clean_title(raw: str) -> str:
    """A title as plain single-line text: tags dropped, entities decoded, Persian letters."""
    text = html.unescape(nh3.clean(raw, tags=set()))
    text = single_line(normalize_text(text))
    return cut_at_word(text, TITLE_MAX_CHARS)


def plain_text(fragment: str) -> str:
    """The text of an HTML fragment, without any markup."""
    return _SPACES.sub(" ", html.unescape(nh3.clean(fragment, tags=set()))).strip()


def clean_summary(raw: str, base_url: str | None = None) -> str:
    """A summary as HTML from a small allow-list, at most SUMMARY_MAX_CHARS of text.

    The stored summary is kept long; the digest shortens it to its own length
    (`shorten_summary`), so changing that length needs no new fetch.
    """
    cleaned = sanitize_html(normalize_text(raw).replace("\r", " "))
    if base_url:
        cleaned = _resolve_hrefs(cleaned, base_url)
    return shorten_summary(_SPACES.sub(" ", cleaned).strip(), SUMMARY_MAX_CHARS)


def shorten_summary(summary_html: str, limit: int) -> str:
    """The summary unchanged when its text fits in `limit` characters, else a teaser.

    A teaser is plain (escaped) text cut at a word boundary and ending in «…»:
    cutting markup in the middle would leave tags open, and a teaser needs no links.
    """
    text = plain_text(summary_html)
    if len(text) <= limit:
        return summary_html
    return html.escape(cut_at_word(single_line(text), limit), quote=False)


def sanitize_html(fragment: str) -> str:
    """HTML reduced to the summary allow-list; links only to http(s)."""
    return nh3.clean(
        fragment,
        tags=SUMMARY_TAGS,
        attributes=SUMMARY_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


_HREF = re.compile(r'href="([^"]*)"')


def _resolve_hrefs(fragment: str, base_url: str) -> str:
    def resolve(match: re.Match[str]) -> str:
        target = absolute_url(html.unescape(match.group(1)), base_url)
        return f'href="{html.escape(target)}"' if target else 'href="#"'

    return _HREF.sub(resolve, fragment)


def cut_at_word(text: str, limit: int) -> str:
    """At most `limit` characters, ending at a word boundary, with «…» if cut.

    Only whitespace separates words: a ZWNJ (half-space) joins the parts of one word
    («گزارش‌ها» stays whole) and punctuation stays with the word before it. A single
    word longer than `limit` is the one case cut inside a word.
    """
    if len(text) <= limit:
        return text
    # The last whitespace at or before index limit - 1 leaves room for the ellipsis.
    space = max((m.start() for m in _SPACES.finditer(text, 0, limit)), default=0)
    head = text[:space] if space > 0 else text[: limit - 1]
    return head.rstrip().rstrip(" ،,.؛:;-") + "…"


def absolute_url(url: str | None, base_url: str | None) -> str | None:
    """An http(s) URL resolved against the feed, or None for anything else."""
    if not url:
        return None
    url = single_line(url)
    resolved = urljoin(base_url, url) if base_url else url
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        return None
    return resolved


def canonical_url(url: str) -> str:
    """The article URL with tracking parameters and the fragment removed, host lowercased."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not TRACKING_PARAMS.match(k)]
    netloc = parts.netloc.lower()
    scheme = parts.scheme.lower()
    if (scheme, netloc.rpartition(":")[2]) in {("http", "80"), ("https", "443")}:
        netloc = netloc.rpartition(":")[0]
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


def clean_label(raw: str | None, limit: int = 200) -> str | None:
    """A section or author name as short plain text, or None when empty."""
    if not raw:
        return None
    text = clean_title(raw)[:limit]
    return text or None
