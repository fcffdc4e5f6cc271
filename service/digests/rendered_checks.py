"""Checks on one reader's rendered message: the bytes the relay would get, parsed back.

Each function takes the rendered output (the complete message bytes, its HTML part
decoded, the parsed tree) and returns the problems it finds, each naming where it is
(the article's title) and saying what it is in Persian and in English. The rules are
the house rules for right-to-left email, Gmail's clipping limit, and what makes a
link or an image work for every reader.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header
from email.message import EmailMessage
from html import unescape
from urllib.parse import urlsplit

from lxml import html as lxml_html

from service.persian import persian_digits


class Severity(enum.StrEnum):
    BLOCKER = "blocker"  # the send does not start (an admin may override)
    WARNING = "warning"  # shown; the send may start
    NOTE = "note"  # information, e.g. links still being fetched


@dataclass(frozen=True)
class CheckItem:
    code: str
    severity: Severity
    fa: str
    en: str
    detail: str = ""  # where: an article's title, a URL, a byte count


@dataclass(frozen=True)
class ArticleRef:
    title: str
    url: str


@dataclass(frozen=True)
class Clip:
    """Where Gmail would cut this HTML, if it would."""

    html_bytes: int
    cut_at: int | None  # byte offset of the cut; None when the whole message shows
    last_visible: str | None  # title of the last article wholly before the cut
    first_cut: str | None  # title of the first article the reader would not see whole


@dataclass(frozen=True)
class Link:
    url: str
    tag: str  # "a" or "img"
    article: str | None  # the title of the article it belongs to, if any


# Gmail hides everything after about 102 KB of HTML behind «[Message clipped]», the
# unsubscribe footer included. Counted in bytes of the decoded HTML part.
GMAIL_CLIP_BYTES = 102 * 1024
CLIP_WARNING_BYTES = 90 * 1024
STYLE_MAX_BYTES = 16 * 1024
HEADER_LINE_MAX = 78
# About what an inbox list shows of a subject on a desktop before cutting it.
SUBJECT_INBOX_CHARS = 70
FONT_STACK = "Vazirmatn, Tahoma, 'Segoe UI', Arial, sans-serif"
ARABIC_FORMS = frozenset("\u064a\u0643") | frozenset(chr(c) for c in range(0x0660, 0x066A))
PERSIAN_DIGITS = frozenset(persian_digits("0123456789"))
TEMPLATE_SYNTAX = ("{{", "{%", "%%CHAPAR_")
ZWNJ = "\u200c"
_LATIN = re.compile(r"[A-Za-z]")
_HREF = re.compile(r'href="([^"]*)"')
_PERSIAN_ENTITY = re.compile(r"&#(?:x0*6[0-9a-f]{2}|0*(?:15[3-9][0-9]|16[0-9][0-9]|17[0-4][0-9]));",
                             re.IGNORECASE)


def item(code: str, severity: Severity, fa: str, en: str, detail: str = "") -> CheckItem:
    return CheckItem(code, severity, fa, en, detail)


def parse_message(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    return str(part.get_content()) if part is not None else ""


def parse_html(html: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(html or "<html></html>")


class ArticleFinder:
    """Which article an element of the HTML belongs to: the one linked from its table cell."""

    def __init__(self, articles: Sequence[ArticleRef]) -> None:
        self.by_url = {a.url: a.title for a in articles}

    def __call__(self, element: lxml_html.HtmlElement) -> str | None:
        cell = next((e for e in element.iterancestors() if e.tag == "td"), None)
        for link in (cell if cell is not None else element).iter("a"):
            title = self.by_url.get(link.get("href", ""))
            if title is not None:
                return title
        return None


def links_in(tree: lxml_html.HtmlElement, articles: Sequence[ArticleRef]) -> list[Link]:
    find = ArticleFinder(articles)
    found = [Link(e.get("href", ""), "a", find(e)) for e in tree.iter("a")]
    found += [Link(e.get("src", ""), "img", find(e)) for e in tree.iter("img")]
    return found


def where(article: str | None, url: str = "") -> str:
    return " — ".join(part for part in (article or "", url) if part)


def link_items(links: Iterable[Link]) -> list[CheckItem]:
    """Every link absolute (a relative one leads nowhere from an inbox); no Persian digits in URLs."""
    items: list[CheckItem] = []
    for link in links:
        parts = urlsplit(link.url.strip())
        absolute = (parts.scheme in ("http", "https") and bool(parts.netloc)) or parts.scheme == "mailto"
        if not absolute:
            items.append(item("links.relative", Severity.BLOCKER,
                              "پیوند نسبی یا نادرست است و از صندوق نامه به جایی نمی‌رسد",
                              "a link is not absolute and leads nowhere from an inbox",
                              where(link.article, link.url or "(empty)")))
        if set(link.url) & PERSIAN_DIGITS:
            items.append(item("rtl.digits_in_url", Severity.WARNING,
                              "رقم فارسی در نشانی پیوند یا تصویر", "Persian digits inside a URL",
                              where(link.article, link.url)))
    return items


def clip(html: str, articles: Sequence[ArticleRef]) -> Clip:
    """The HTML's size, and what a Gmail reader would still see whole if it is cut."""
    data = html.encode("utf-8")
    if len(data) <= GMAIL_CLIP_BYTES:
        return Clip(len(data), None, None, None)
    # An article ends with its last link (the «read more» link at the foot of its cell).
    ends: dict[str, int] = {}
    for match in _HREF.finditer(html):
        url = unescape(match.group(1))
        ends[url] = len(html[:match.end()].encode("utf-8"))
    last_visible = first_cut = None
    for article in articles:
        end = ends.get(article.url)
        if end is None:
            continue
        if end <= GMAIL_CLIP_BYTES:
            last_visible = article.title
        elif first_cut is None:
            first_cut = article.title
    return Clip(len(data), GMAIL_CLIP_BYTES, last_visible, first_cut)


def size_items(cut: Clip) -> list[CheckItem]:
    kb = f"{cut.html_bytes / 1024:.1f} KB"
    if cut.cut_at is not None:
        shown = f"; last article shown whole: {cut.last_visible}" if cut.last_visible else ""
        return [item("size.clipped", Severity.BLOCKER,
                     f"HTML نامه {persian_digits(kb)} است و Gmail آن را از بایت "
                     f"{persian_digits(cut.cut_at)} به بعد پنهان می‌کند (پیوند لغو عضویت هم)",
                     f"the HTML is {kb}: Gmail clips it after byte {cut.cut_at}, "
                     "hiding the unsubscribe link", f"{kb}{shown}")]
    if cut.html_bytes >= CLIP_WARNING_BYTES:
        return [item("size.near_clip", Severity.WARNING,
                     f"HTML نامه {persian_digits(kb)} است؛ نزدیک مرز بریدن Gmail (۱۰۲ KB)",
                     f"the HTML is {kb}, close to Gmail's 102 KB clipping limit", kb)]
    return []


def placeholder_items(parts: Mapping[str, str]) -> list[CheckItem]:
    """Template syntax or a per-recipient marker left in what a reader would get."""
    items = []
    for name, text in parts.items():
        for mark in TEMPLATE_SYNTAX:
            at = text.find(mark)
            if at >= 0:
                items.append(item("placeholders", Severity.BLOCKER,
                                  f"نشانهٔ قالب پر نشده در {name}: «{mark}»",
                                  f"unresolved template syntax in the {name}: {mark!r}",
                                  text[max(0, at - 30):at + 40]))
    return items


def subject_items(subject: str) -> list[CheckItem]:
    if not subject.strip():
        return [item("subject.missing", Severity.BLOCKER, "موضوع نامه خالی است", "the subject is empty")]
    if len(subject) > SUBJECT_INBOX_CHARS:
        return [item("subject.long", Severity.WARNING,
                     f"موضوع {persian_digits(len(subject))} نویسه است؛ صندوق نامه حدود "
                     f"{persian_digits(SUBJECT_INBOX_CHARS)} نویسه را نشان می‌دهد",
                     f"the subject is {len(subject)} characters; an inbox shows about "
                     f"{SUBJECT_INBOX_CHARS}", subject)]
    return []


def image_items(tree: lxml_html.HtmlElement, articles: Sequence[ArticleRef]) -> list[CheckItem]:
    """Every image has a (Persian) alt text, a width, and max-width:100% (RTL-EMAIL 5)."""
    find = ArticleFinder(articles)
    items = []
    for image in tree.iter("img"):
        named = where(find(image), image.get("src", ""))
        if not (image.get("alt") or "").strip():
            items.append(item("images.alt", Severity.WARNING, "تصویر بدون متن جایگزین (alt)",
                              "an image has no alt text", named))
        if not image.get("width") or "max-width:100%" not in _compact(image.get("style")):
            items.append(item("images.width", Severity.WARNING,
                              "تصویر بدون width یا max-width:100%",
                              "an image lacks width or max-width:100%", named))
    return items


def _compact(style: str | None) -> str:
    return (style or "").replace(" ", "").lower()


def direction_items(tree: lxml_html.HtmlElement, html: str) -> list[CheckItem]:
    """RTL-EMAIL 1-3: direction on the root, body, wrapper and every table and cell."""
    items = []
    body = tree.find("body")
    wrappers = tree.xpath('//div[@role="article"][@dir="rtl"][@lang="fa"]')
    if (tree.get("lang") != "fa" or tree.get("dir") != "rtl" or body is None
            or body.get("dir") != "rtl" or "direction:rtl" not in _compact(body.get("style"))
            or not wrappers):
        items.append(item("rtl.root", Severity.WARNING,
                          "html، body یا قاب نامه (div با role=article) جهت راست‌به‌چپ و زبان fa ندارد",
                          'html, body or the role="article" wrapper lacks dir="rtl"/lang="fa"'))
    bad = [e for e in tree.xpath("//table | //td") if e.get("dir") != "rtl"
           or (e.get("align") != "center" and "text-align:right" not in _compact(e.get("style")))]
    bad += [e for e in tree.xpath('//td[contains(@class, "content")]') if e.get("align") != "right"]
    if bad:
        items.append(item("rtl.cells", Severity.WARNING,
                          "جدول یا خانه‌ای بدون dir=rtl و align/text-align راست",
                          "a table or cell lacks dir=rtl with right alignment",
                          _snippet(bad[0])))
    if "direction:ltr" in _compact(html):
        items.append(item("rtl.ltr_container", Severity.WARNING, "direction:ltr روی یک ظرف",
                          "direction:ltr on a container"))
    if tree.xpath("//bdi | //a[@dir]"):
        items.append(item("rtl.isolation", Severity.WARNING,
                          "<bdi> یا dir روی <a> (در Gmail و Outlook کار نمی‌کند)",
                          "<bdi> or dir on <a>, which Gmail and Outlook ignore"))
    return items


def latin_items(tree: lxml_html.HtmlElement, articles: Sequence[ArticleRef]) -> list[CheckItem]:
    """RTL-EMAIL 3: Latin runs in visible text sit in <span dir="ltr">."""
    find = ArticleFinder(articles)
    body = tree.find("body")
    for element in body.iter() if body is not None else ():
        if not isinstance(element.tag, str) or "preheader" in (element.get("class") or ""):
            continue
        for text, parent in ((element.text, element), (element.tail, element.getparent())):
            if text and _LATIN.search(text) and not _inside_ltr(parent):
                return [item("rtl.latin", Severity.WARNING,
                             'متن لاتین بیرون از <span dir="ltr">',
                             'Latin text outside <span dir="ltr">',
                             where(find(element), text.strip()[:60]))]
    return []


def _inside_ltr(element: lxml_html.HtmlElement | None) -> bool:
    while element is not None:
        if element.get("dir") == "ltr" or "preheader" in (element.get("class") or ""):
            return True
        element = element.getparent()
    return False


def style_items(html: str) -> list[CheckItem]:
    """RTL-EMAIL 4 and 6: the font stack and Outlook's Tahoma; @media kept with !important."""
    items = []
    mso = html.find("<!--[if mso]>")
    if FONT_STACK not in html or mso < 0 or "Tahoma" not in html[mso:html.find("<![endif]-->", mso)]:
        items.append(item("rtl.fonts", Severity.WARNING,
                          "فهرست قلم‌ها یا جایگزین Tahoma برای Outlook نیست",
                          "the font stack or Outlook's Tahoma fallback is missing"))
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL | re.IGNORECASE)
    media = "".join(s[s.find("@media"):] for s in styles if "@media" in s)
    if not media or "!important" not in media:
        items.append(item("css.media", Severity.WARNING,
                          "قاعده‌های @media (با !important) پس از درون‌خطی کردن CSS نمانده‌اند",
                          "@media rules with !important did not survive CSS inlining"))
    largest = max((len(s.encode("utf-8")) for s in styles), default=0)
    if largest >= STYLE_MAX_BYTES:
        items.append(item("css.style_size", Severity.WARNING,
                          "بلوک <style> از ۱۶ KB بزرگ‌تر است", "a <style> block is 16 KB or more",
                          f"{largest} bytes"))
    return items


def preheader_items(tree: lxml_html.HtmlElement) -> list[CheckItem]:
    body = tree.find("body")
    first = body[0] if body is not None and len(body) else None
    if first is None or "preheader" not in (first.get("class") or "") or not (first.text or "").strip():
        return [item("preheader", Severity.WARNING, "پیش‌متن (preheader) اول بدنه نیست یا خالی است",
                     "the preheader is missing, empty or not first in the body")]
    return []


def persian_text_items(tree: lxml_html.HtmlElement, html: str, parts: Mapping[str, str],
                       articles: Sequence[ArticleRef]) -> list[CheckItem]:
    """RTL-EMAIL 8, 9, 12: half-spaces kept, no Arabic forms, Persian not turned into entities."""
    items = []
    text = tree.text_content()
    for name, value in {"html": text, **parts}.items():
        arabic = set(value) & ARABIC_FORMS
        if arabic:
            items.append(item("rtl.arabic_forms", Severity.WARNING,
                              f"حرف یا رقم عربی در {name}", f"Arabic letters or digits in the {name}",
                              " ".join(sorted(arabic))))
    flat = " ".join(text.split())
    for article in articles:
        if ZWNJ in article.title and " ".join(article.title.split()) not in flat:
            items.append(item("rtl.zwnj", Severity.WARNING, "نیم‌فاصلهٔ عنوان در نامه نمانده است",
                              "a title lost its half-spaces (ZWNJ) in the message", article.title))
    if _PERSIAN_ENTITY.search(html):
        items.append(item("rtl.entities", Severity.WARNING,
                          "متن فارسی به صورت موجودیت عددی (&#...;) آمده است",
                          "Persian text written as numeric entities, not UTF-8"))
    return items


def mime_items(message: EmailMessage, raw: bytes, html: str, source_html: str) -> list[CheckItem]:
    """RTL-EMAIL 14-19 on the bytes the relay would get."""
    items = []
    parts = [p for p in message.iter_parts()] if message.is_multipart() else []
    types = [(p.get_content_type(), (p.get_content_charset() or "").lower()) for p in parts]
    if (message.get_content_type() != "multipart/alternative"
            or types != [("text/plain", "utf-8"), ("text/html", "utf-8")]):
        items.append(item("mime.structure", Severity.WARNING,
                          "ساختار نامه multipart/alternative با متن ساده و سپس HTML (UTF-8) نیست",
                          "not multipart/alternative with text/plain then text/html, both UTF-8",
                          " ".join(t for t, _ in types)))
    html_parts = [p for p in parts if p.get_content_type() == "text/html"]
    if html_parts and html_parts[0].get("Content-Transfer-Encoding", "").lower() == "quoted-printable":
        items.append(item("mime.encoding", Severity.WARNING,
                          "بخش HTML با quoted-printable کد شده و دو برابر بزرگ‌تر می‌شود",
                          "the HTML part is quoted-printable, which doubles Persian's size"))
    head = raw.partition(b"\r\n\r\n")[0]
    long_lines = _long_header_lines(head)
    if long_lines or not _decodes(message.get("Subject", ""), raw):
        items.append(item("mime.headers", Severity.WARNING,
                          "سرآیند بلندتر از ۷۸ نویسه یا موضوعی که UTF-8 درست نمی‌دهد",
                          "a header line over 78 characters, or a subject that is not valid UTF-8",
                          long_lines[0][:60].decode("ascii", "replace") if long_lines else ""))
    message_id = message.get("Message-ID", "")
    if len(message.get_all("From", [])) != 1 or "@" not in message_id or not message.get("Date"):
        items.append(item("mime.identity", Severity.WARNING,
                          "نامه باید یک From، یک Message-ID با دامنه و یک Date داشته باشد",
                          "one From, a Message-ID with a domain and a Date are required"))
    unsubscribe = message.get("List-Unsubscribe", "").strip()
    url = unsubscribe.strip("<>")
    if not unsubscribe.startswith("<https://"):
        items.append(item("unsubscribe.https", Severity.WARNING,
                          "نشانی لغو عضویت https نیست؛ Gmail و Yahoo لغو با یک کلیک را نمی‌پذیرند",
                          "the unsubscribe URL is not https, which Gmail and Yahoo require"))
    if (not unsubscribe.startswith("<http") or message.get("List-Unsubscribe-Post", "")
            != "List-Unsubscribe=One-Click" or f'href="{url}"' not in html):
        items.append(item("unsubscribe", Severity.BLOCKER,
                          "لغو عضویت با یک کلیک (List-Unsubscribe با https و List-Unsubscribe-Post "
                          "و پیوند دیدنی در متن) کامل نیست",
                          "one-click unsubscribe is incomplete (https List-Unsubscribe, "
                          "List-Unsubscribe-Post, and a visible link in the body)"))
    signature = message.get("DKIM-Signature", "")
    if signature:
        signed = re.search(r"\bh=([^;]*)", signature.replace("\r\n", "").replace(" ", ""))
        names = {n.lower() for n in (signed.group(1).split(":") if signed else [])}
        if not {"list-unsubscribe-post", "feedback-id"} <= names:
            items.append(item("dkim.headers", Severity.WARNING,
                              "امضای DKIM سرآیندهای List-Unsubscribe-Post و Feedback-ID را نمی‌پوشاند",
                              "DKIM does not sign List-Unsubscribe-Post and Feedback-ID"))
    if html.count(ZWNJ) != source_html.count(ZWNJ):
        items.append(item("rtl.zwnj", Severity.WARNING,
                          "تعداد نیم‌فاصله‌ها در بخش HTML نامه با نسخهٔ ساخته‌شده یکی نیست",
                          "the HTML part has a different number of ZWNJ than the rendered issue",
                          f"{html.count(ZWNJ)} != {source_html.count(ZWNJ)}"))
    return items


# A URL in angle brackets has nowhere to fold, and a signature is written by its own rules.
_UNFOLDABLE = (b"list-unsubscribe", b"dkim-signature")


def _long_header_lines(head: bytes) -> list[bytes]:
    """Header lines (continuations included) over 78 characters, where folding was possible."""
    found, name = [], b""
    for line in head.split(b"\r\n"):
        if not line.startswith((b" ", b"\t")):
            name = line.partition(b":")[0].strip().lower()
        if len(line) > HEADER_LINE_MAX and name not in _UNFOLDABLE:
            found.append(line)
    return found


def _decodes(subject: str, raw: bytes) -> bool:
    """Each encoded word of the raw Subject decodes to valid UTF-8 (RTL-EMAIL 16)."""
    line = re.search(rb"^Subject:(.*(?:\r\n[ \t].*)*)", raw, re.MULTILINE)
    if line is None or not subject:
        return False
    try:
        for chunk, charset in decode_header(line.group(1).decode("ascii").replace("\r\n", "")):
            if isinstance(chunk, bytes):
                chunk.decode(charset or "ascii")
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _snippet(element: lxml_html.HtmlElement) -> str:
    return str(lxml_html.tostring(element, encoding="unicode"))[:120]
