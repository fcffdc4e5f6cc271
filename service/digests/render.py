"""Render an issue once: subject, preheader, HTML (CSS inlined) and text.

Everything in the output is the same for every recipient except the two
placeholders from service.mail.placeholders, which the sender fills per recipient.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from html import escape, unescape

import nh3
from markupsafe import Markup

from service.articles.clean import cut_at_word, plain_text, sanitize_html, shorten_summary
from service.digests.models import Issue, IssueArticle
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL
from service.mail.render import EmailTemplates, RenderedEmail
from service.persian import jalali_date, normalize_text, persian_digits, single_line
from service.settings import Settings

TEMPLATE = "weekly-digest"
PREHEADER_MAX = 140
# Marks the footer part that belongs to one subscriber; the archive cuts it out.
PERSONAL_START = "<!--chapar:personal-->"
PERSONAL_END = "<!--/chapar:personal-->"

# A Latin run: words of Latin letters (digits allowed inside), joined by the
# punctuation that occurs in brand names, versions and addresses.
_LATIN_RUN = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*(?:[ .\-_/:@&+'][A-Za-z0-9]+)*")
_TAG = re.compile(r"(<[^>]*>)")
# A bare web address in the editor's introduction; trailing punctuation is the sentence's.
_WEB_ADDRESS = re.compile(r"https?://[^\s<>\"'«»]+?(?=[.,;:!?)\]،؛]*(?:\s|$))")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
INTRO_TAGS = {"p", "br", "a", "span"}
INTRO_ATTRIBUTES = {"a": {"href"}, "span": {"dir"}}
OTHER_SECTION = "دیگر خبرها"  # the heading of articles without a section, when grouped


def isolate_latin(text: str) -> Markup:
    """Escape plain text and wrap each Latin run in <span dir="ltr">."""
    out: list[str] = []
    last = 0
    for match in _LATIN_RUN.finditer(text):
        out.append(escape(text[last:match.start()], quote=False))
        out.append(f'<span dir="ltr">{escape(match.group(0), quote=False)}</span>')
        last = match.end()
    out.append(escape(text[last:], quote=False))
    return Markup("".join(out))  # noqa: S704 - every piece is escaped above


def isolate_latin_html(fragment: str) -> Markup:
    """The same for a summary: sanitised again, then only text between tags is touched."""
    parts = _TAG.split(sanitize_html(fragment))
    for i in range(0, len(parts), 2):
        # Decode the sanitiser's escaping so "AT&amp;T" is one run, then escape again.
        parts[i] = str(isolate_latin(unescape(parts[i])))
    return Markup("".join(parts))  # noqa: S704 - nh3 tags plus text escaped by isolate_latin


def clean_intro(raw: str) -> str:
    """The editor's introduction as plain text: any markup dropped, paragraphs kept."""
    text = unescape(nh3.clean(normalize_text(raw).replace("\r\n", "\n").replace("\r", "\n"),
                              tags=set()))
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def intro_html(text: str) -> Markup:
    """Plain text as paragraphs: a blank line starts a paragraph, a web address is a link.

    Every piece is escaped first; nh3 then keeps only paragraphs, line breaks, links to
    http(s) and the direction spans, so whatever the editor typed cannot add markup.
    """
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(text.strip()):
        lines = []
        for line in block.split("\n"):
            out: list[str] = []
            last = 0
            for match in _WEB_ADDRESS.finditer(line):
                url = escape(match.group(0))
                out.append(str(isolate_latin(line[last:match.start()])))
                out.append(f'<a href="{url}"><span dir="ltr">{url}</span></a>')
                last = match.end()
            out.append(str(isolate_latin(line[last:])))
            lines.append("".join(out))
        paragraphs.append(f"<p>{'<br>'.join(lines)}</p>")
    cleaned = nh3.clean("".join(paragraphs), tags=INTRO_TAGS, attributes=INTRO_ATTRIBUTES,
                        url_schemes={"http", "https"}, link_rel=None, strip_comments=True)
    return Markup(cleaned)  # noqa: S704 - sanitised by nh3 just above


@dataclass(frozen=True)
class DigestArticle:
    title: str
    summary_html: str
    summary_text: str
    url: str
    image_url: str | None
    image_alt: str
    section: str | None
    author: str | None
    date: str  # Jalali, Persian digits, Tehran time


@dataclass(frozen=True)
class DigestGroup:
    """Articles under one section heading; `section` None: no heading (not grouped)."""

    section: str | None
    articles: list[DigestArticle]


@dataclass(frozen=True)
class DigestContext:
    """Everything the weekly-digest templates see; JSON-safe."""

    list_name: str
    subject: str
    preheader: str
    number: int
    date: str
    intro: str | None
    articles: list[DigestArticle]  # all of them, in the order the email shows them
    lead: DigestArticle | None  # shown first, larger, with its image
    groups: list[DigestGroup]  # the articles after the lead
    grouped: bool
    archive_url: str
    archive_index_url: str
    unsubscribe_url: str
    preferences_url: str
    sender_name: str
    sender_address: str


def issue_subject(settings: Settings, number: int, lead_title: str) -> str:
    """«خبرنامه هفتگی، شمارهٔ ۱۲: <the first title>», on one line."""
    head = f"{settings.list_name}، شمارهٔ {persian_digits(number)}"
    return single_line(f"{head}: {cut_at_word(lead_title, 90)}")


def issue_preheader(titles: Sequence[str]) -> str:
    """A short truthful preview line: how many articles, and the first titles."""
    count = persian_digits(len(titles))
    text = f"{count} خبر در این شماره: " + "، ".join(titles[:3])
    return cut_at_word(single_line(text), PREHEADER_MAX)


def digest_article(item: IssueArticle, settings: Settings) -> DigestArticle:
    """One article as the digest shows it: the summary a phone screen's teaser at most."""
    summary = shorten_summary(item.summary_html, settings.digest_summary_chars)
    return DigestArticle(
        title=item.title,
        summary_html=summary,
        summary_text=plain_text(summary),
        url=item.url,
        image_url=item.image_url,
        image_alt=f"تصویر خبر: {cut_at_word(item.title, 80)}",
        section=item.section,
        author=item.author,
        date=jalali_date(item.published_at, settings.tz),
    )


def in_email_order(issue: Issue, items: Sequence[IssueArticle]) -> list[IssueArticle]:
    """The issue's articles as the email shows them: the lead story first, then by position."""
    ordered = sorted(items, key=lambda item: item.position)
    return sorted(ordered, key=lambda item: item.article_id != issue.lead_article_id)


def section_groups(articles: Sequence[DigestArticle], grouped: bool) -> list[DigestGroup]:
    """One group without a heading, or one per section in order of first appearance."""
    if not grouped:
        return [DigestGroup(None, list(articles))] if articles else []
    by_section: dict[str | None, list[DigestArticle]] = {}
    for article in articles:
        by_section.setdefault(article.section, []).append(article)
    groups = [DigestGroup(name, members) for name, members in by_section.items() if name]
    if None in by_section:
        groups.append(DigestGroup(OTHER_SECTION, by_section[None]))
    return groups


def digest_context(issue: Issue, items: Sequence[IssueArticle], settings: Settings,
                   *, issue_date: datetime) -> DigestContext:
    base = settings.public_url.rstrip("/")
    ordered = in_email_order(issue, items)
    articles = [digest_article(item, settings) for item in ordered]
    has_lead = bool(ordered) and ordered[0].article_id == issue.lead_article_id
    lead = articles[0] if has_lead else None
    grouped = bool(issue.group_by_section)
    return DigestContext(
        list_name=settings.list_name,
        subject=issue.subject,
        preheader=issue.preheader,
        number=issue.number,
        date=jalali_date(issue_date, settings.tz),
        intro=issue.intro,
        articles=articles,
        lead=lead,
        groups=section_groups(articles[1:] if lead else articles, grouped),
        grouped=grouped,
        archive_url=f"{base}/archive/{issue.number}",
        archive_index_url=f"{base}/archive",
        unsubscribe_url=UNSUBSCRIBE_URL,
        preferences_url=PREFERENCES_URL,
        sender_name=settings.from_name,
        sender_address=settings.from_address,
    )


def digest_templates(settings: Settings) -> EmailTemplates:
    templates = EmailTemplates(settings.templates_dir)
    templates.env.filters["ltr"] = isolate_latin
    templates.env.filters["ltr_html"] = isolate_latin_html
    templates.env.filters["intro_html"] = intro_html
    return templates


def render_digest(context: DigestContext, settings: Settings, *, inline: bool = True) -> RenderedEmail:
    """Render the three parts once; CSS is inlined here, once per issue."""
    return digest_templates(settings).render(TEMPLATE, asdict(context), inline=inline)


def without_personal_links(html: str, replacement: str) -> str:
    """The issue HTML with the per-recipient footer replaced, for the public archive."""
    pattern = re.compile(re.escape(PERSONAL_START) + ".*?" + re.escape(PERSONAL_END), re.DOTALL)
    return pattern.sub(lambda _m: replacement, html)
