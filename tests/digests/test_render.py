"""The rendered issue against every item of RTL-EMAIL.md that concerns it."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from lxml import html as lxml_html  # type: ignore[import-untyped]
from sqlalchemy.orm import Session

import service.mail.render
from service.articles.ingest import make_article, upsert_articles
from service.digests.build import build_issue
from service.digests.models import Issue
from service.digests.render import isolate_latin, isolate_latin_html
from service.mail.compose import build_message
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL, Personalizer
from service.mail.render import RenderedEmail
from service.runtime import Runtime
from service.settings import Settings
from service.subscribers.emails import render_confirmation
from tests.digests.factories import LONG_SUMMARY

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)  # Friday 08:00 in Tehran
ZWNJ = "\u200c"
ARABIC = set("\u064a\u0643") | {chr(0x0660 + i) for i in range(10)}
PERSIAN_DIGITS = set("۰۱۲۳۴۵۶۷۸۹")


@pytest.fixture
def settings() -> Settings:
    return Settings(environment="test", public_url="https://chapar.example.com",
                    from_address="news@chapar.example.com", from_name="خبرنامه هفتگی نمونه")


def ten_long_articles(session: Session) -> None:
    """Ten articles as a CMS writes them: Arabic ي/ك, Arabic-Indic digits, Latin runs."""
    items = []
    for i in range(10):
        items.append(make_article(
            url=f"https://news.example.com/2026/11/{1000 + i}?utm_source=rss",
            title=f"گزارش{ZWNJ}ها: نشست COP31 در Baku و برنامه هسته{ZWNJ}ای كره ({i} ٢٠٢٦)",
            summary=f"<p>{LONG_SUMMARY} ويژه {i} <b>iPhone 17</b> و ٣ نكته ديگر</p>",
            image_url=f"https://news.example.com/images/{i}.jpg" if i % 2 == 0 else None,
            section="بین‌الملل", author="مريم احمدی",
            published_at=NOW - timedelta(hours=i + 1), source="test",
        ))
    upsert_articles(session, items, NOW)


@pytest.fixture
def issue(session: Session, settings: Settings) -> Issue:
    ten_long_articles(session)
    built = build_issue(session, settings, NOW, intro="سلام! این هفته با OpenAI و ١٠ خبر دیگر.")
    assert built.issue is not None
    return built.issue


def tree(issue: Issue) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(issue.html)


def mime(issue: Issue, settings: Settings) -> EmailMessage:
    values = {UNSUBSCRIBE_URL: "https://chapar.example.com/u/tok", PREFERENCES_URL: "https://chapar.example.com/p/tok"}
    rendered = RenderedEmail(issue.subject, Personalizer(issue.text).fill(values),
                             Personalizer(issue.html).fill(values))
    message = build_message(rendered, from_name=settings.from_name, from_address=settings.from_address,
                            to="reader@example.org", now=NOW)
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_direction_on_html_body_wrapper_and_every_table_and_cell(issue: Issue) -> None:
    doc = tree(issue)
    assert doc.get("lang") == "fa" and doc.get("dir") == "rtl"
    body = doc.find("body")
    assert body is not None and body.get("dir") == "rtl" and "direction:rtl" in body.get("style", "")
    wrapper = doc.xpath('//div[@role="article"]')[0]
    assert wrapper.get("dir") == "rtl" and wrapper.get("lang") == "fa"
    for element in doc.xpath("//table | //td"):
        assert element.get("dir") == "rtl", lxml_html.tostring(element)[:200]
        if "container" in element.get("class", ""):
            assert element.get("align") == "center"  # the 600px column is centred
            continue
        assert "text-align:right" in element.get("style", "").replace(" ", "")
    for cell in doc.xpath('//td[contains(@class, "content")]'):
        assert cell.get("align") == "right"
    assert "direction:ltr" not in issue.html.replace(" ", "")


def test_latin_runs_are_isolated_inside_links_never_dir_on_a_link(issue: Issue) -> None:
    doc = tree(issue)
    headings = doc.xpath("//h2/a")
    assert len(headings) == 10
    for link in headings:
        spans = link.xpath('./span[@dir="ltr"]')
        assert [s.text for s in spans][:2] == ["COP31", "Baku"]
    assert not doc.xpath("//a[@dir]")
    assert doc.xpath('//a[starts-with(@href, "mailto:")]/span[@dir="ltr"]')
    assert '<span dir="ltr">iPhone 17</span>' in issue.html
    assert '<span dir="ltr">OpenAI</span>' in issue.html


def test_isolating_latin_escapes_and_keeps_entities_whole() -> None:
    assert str(isolate_latin("<b>x</b> & سلام")) == (
        '&lt;<span dir="ltr">b</span>&gt;<span dir="ltr">x</span>&lt;/<span dir="ltr">b</span>&gt; &amp; سلام'
    )
    assert str(isolate_latin_html("AT&amp;T &#8204; <b>Go</b> &lt;i&gt;")) == (
        '<span dir="ltr">AT&amp;T</span> \u200c <b><span dir="ltr">Go</span></b> '
        '&lt;<span dir="ltr">i</span>&gt;'
    )


def test_font_stack_and_outlook_fallback(issue: Issue) -> None:
    assert "<!--[if mso]>" in issue.html
    mso = issue.html[issue.html.index("<!--[if mso]>"):]
    assert "Tahoma" in mso[: mso.index("<![endif]-->")]
    for cell in tree(issue).xpath('//td[contains(@class, "content")]'):
        assert "Vazirmatn, Tahoma" in cell.get("style", "")


def test_container_images_and_preheader(issue: Issue) -> None:
    doc = tree(issue)
    container = doc.xpath('//table[contains(@class, "container")]')[0]
    # Fluid up to 600px from inline styles alone; Outlook's conditional table holds 600px.
    style = container.get("style", "").replace(" ", "")
    assert container.get("width") == "100%" and "width:100%" in style and "max-width:600px" in style
    assert re.search(r'<!--\[if mso\]><table [^>]*width="600"', issue.html)
    images = doc.xpath("//img")
    assert len(images) == 5
    for image in images:
        assert image.get("width") == "536" and "max-width:100%" in image.get("style", "")
        alt = image.get("alt", "")
        assert alt.startswith("تصویر خبر") and not set(alt) & ARABIC
    preheader = doc.xpath('//div[contains(@class, "preheader")]')[0]
    first_in_body = doc.find("body")[0]
    assert preheader is first_in_body
    assert preheader.text is not None and preheader.text.startswith("۱۰ خبر در این شماره: ")
    assert issue.articles[0].title[:20] in preheader.text
    assert len(issue.preheader) <= 140


def test_media_queries_survive_inlining_and_the_style_block_is_small(issue: Issue) -> None:
    styles = re.findall(r"<style[^>]*>(.*?)</style>", issue.html, re.DOTALL)
    joined = "".join(styles)
    assert "@media only screen and (max-width: 620px)" in joined
    assert "@media (prefers-color-scheme: dark)" in joined
    assert "width: 100% !important" in joined and "#111827 !important" in joined
    assert all(len(s.encode()) < 16 * 1024 for s in styles)


def test_ten_long_articles_stay_under_gmail_clipping(issue: Issue, settings: Settings) -> None:
    assert len(issue.articles) == 10
    assert len(issue.html.encode("utf-8")) < 100 * 1024
    html_part = mime(issue, settings).get_body(("html",))
    assert html_part is not None and html_part["Content-Transfer-Encoding"] == "base64"
    assert len(html_part.get_content().encode("utf-8")) < 100 * 1024


def test_zwnj_count_is_the_same_from_source_to_decoded_mime(session: Session, settings: Settings) -> None:
    ten_long_articles(session)
    source = build_issue(session, settings, NOW).issue
    assert source is not None
    from service.digests.render import digest_context, render_digest

    raw = render_digest(digest_context(source, source.articles, settings, issue_date=NOW), settings,
                        inline=False)
    decoded = mime(source, settings)
    html_part, text_part = decoded.get_body(("html",)), decoded.get_body(("plain",))
    assert html_part is not None and text_part is not None
    # The preheader pads with &#8204; entities, which the inliner writes as characters.
    source_count = html.unescape(raw.html).count(ZWNJ)
    assert source_count == source.html.count(ZWNJ) == html_part.get_content().count(ZWNJ)
    assert source.text.count(ZWNJ) == text_part.get_content().count(ZWNJ)
    # and the stored articles' half-spaces all made it into the text part
    snapshot = "".join(a.title for a in source.articles)
    assert snapshot.count(ZWNJ) == 20
    assert all(a.title in text_part.get_content() for a in source.articles)
    assert "گزارش\u200cها" in text_part.get_content() and "هسته\u200cای" in html_part.get_content()


def test_no_arabic_letters_or_digits_left_and_urls_untouched(issue: Issue) -> None:
    doc = tree(issue)
    text = doc.text_content() + issue.text + issue.subject + issue.preheader
    assert not set(text) & ARABIC
    assert "ویژه" in text and "کره" in text and "۲۰۲۶" in text
    for attribute in doc.xpath("//@href | //@src"):
        assert not set(attribute) & PERSIAN_DIGITS, attribute
    assert 'href="https://news.example.com/2026/11/1000"' in issue.html
    assert "https://news.example.com/2026/11/1000" in issue.text


def test_jalali_date_in_tehran_with_persian_digits(issue: Issue) -> None:
    assert "شمارهٔ ۱ · جمعه ۶ آذر ۱۴۰۵" in issue.html
    assert "جمعه ۶ آذر ۱۴۰۵" in issue.text


def test_per_recipient_parts_are_markers_and_nothing_else_differs(issue: Issue) -> None:
    for part in (issue.html, issue.text):
        assert part.count(UNSUBSCRIBE_URL) == 1 and part.count(PREFERENCES_URL) == 1
    doc = tree(issue)
    unsubscribe = doc.xpath(f'//a[@href="{UNSUBSCRIBE_URL}"]')[0]
    assert unsubscribe.text == "لغو عضویت"
    assert doc.xpath('//a[@href="https://chapar.example.com/archive/1"]')  # view in browser
    assert "خبرنامه هفتگی نمونه" in doc.text_content()
    assert "news@chapar.example.com" in doc.text_content()
    filled = Personalizer(issue.html).fill({UNSUBSCRIBE_URL: "U", PREFERENCES_URL: "P"})
    assert "%%CHAPAR" not in filled and 'href="U"' in filled


def test_css_is_inlined_once_per_issue(session: Session, settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = service.mail.render.inline_css

    def counting(html: str) -> str:
        calls.append(len(html))
        return real(html)

    monkeypatch.setattr(service.mail.render, "inline_css", counting)
    ten_long_articles(session)
    assert build_issue(session, settings, NOW).issue is not None
    assert len(calls) == 1


def test_subject_is_one_persian_line(issue: Issue) -> None:
    assert issue.subject.startswith("خبرنامه هفتگی، شمارهٔ ۱: ")
    assert "\n" not in issue.subject and not set(issue.subject) & ARABIC


def test_persian_stays_utf8_not_numeric_entities(issue: Issue) -> None:
    assert not re.search(r"&#(x0*6[0-9a-f]{2}|0*1[5-7][0-9]{2});", issue.html, re.IGNORECASE)
    assert "خبرنامه هفتگی" in issue.html


def test_a_long_summary_is_cut_near_the_configured_length(session: Session) -> None:
    """A 1,400-character summary is a screen of text on a phone; the digest shows a teaser."""
    summary = LONG_SUMMARY * 7
    assert len(summary) > 1400
    upsert_articles(session, [make_article(url="https://news.example.com/long", title="خبر بلند",
                                           summary=f"<p>{summary}</p>", source="test",
                                           published_at=NOW - timedelta(hours=1))], NOW)
    for limit in (280, 600):
        settings = Settings(environment="test", digest_summary_chars=limit)
        built = build_issue(session, settings, NOW)
        assert built.issue is not None
        shown = tree(built.issue).xpath('//p[@class="summary"]')[0].text_content().strip()
        assert limit - 80 <= len(shown) <= limit and shown.endswith("…")
        assert summary.startswith(shown[:-1])
        assert summary[len(shown) - 1] == " "  # the cut falls between two words
        assert shown.count(ZWNJ) == summary[:len(shown)].count(ZWNJ)
        assert f"\n{shown}\n" in built.issue.text


HEX = re.compile(r"^#([0-9a-f]{6}|[0-9a-f]{3})$")


def hex_colour(value: str | None) -> str | None:
    value = (value or "").strip().lower().removesuffix("!important").strip()
    match = HEX.match(value)
    if not match:
        return None
    digits = match.group(1)
    return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))


def declarations(element: lxml_html.HtmlElement) -> dict[str, str]:
    pairs = (d.split(":", 1) for d in element.get("style", "").split(";") if ":" in d)
    return {k.strip().lower(): v.strip() for k, v in pairs}


def near_invisible_text(html_text: str) -> list[tuple[str, str, str]]:
    """Text whose colour is within SpamAssassin's distance 12 of its background.

    SpamAssassin's HTML parser follows `color` and `background-color` (style and
    attributes) down the tree from black on white, hidden or not, and scores text
    closer than 12 (brightness-weighted RGB distance) as HTML_FONT_LOW_CONTRAST.
    """
    found: list[tuple[str, str, str]] = []

    def distance(fg: str, bg: str) -> float:
        a, b = (tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (fg, bg))
        weights = (0.2126, 0.7152, 0.0722)
        return float(sum((w * (x - y)) ** 2 for w, x, y in zip(weights, a, b, strict=True)) ** 0.5)

    def check(text: str | None, fg: str, bg: str) -> None:
        if text and text.strip(" \t\n\r\f\v\xa0\u200c") and distance(fg, bg) < 12:
            found.append((text.strip()[:40], fg, bg))

    def walk(element: lxml_html.HtmlElement, fg: str, bg: str) -> None:
        style = declarations(element)
        fg = hex_colour(style.get("color")) or hex_colour(element.get("color")) or fg
        bg = (hex_colour(style.get("background-color")) or hex_colour(element.get("bgcolor"))
              or bg)
        check(element.text, fg, bg)
        for child in element:
            if isinstance(child.tag, str):  # comments (Outlook's conditionals) have no text to see
                walk(child, fg, bg)
            check(child.tail, fg, bg)

    body = lxml_html.document_fromstring(html_text).find("body")
    walk(body, "#000000", "#ffffff")
    return found


def test_no_text_is_coloured_like_its_background(issue: Issue, runtime: Runtime) -> None:
    """The hidden preheader is hidden by display and size, not by same-colour text."""
    confirmation = render_confirmation(runtime, 4242, None).html
    for html_text in (issue.html, confirmation):
        assert lxml_html.document_fromstring(html_text).xpath('//div[@class="preheader"]')
        assert near_invisible_text(html_text) == []
    # The check sees what SpamAssassin sees: pale text on the pale page.
    pale = '<body style="background-color:#f3f4f6"><div style="color:#f3f4f6">x</div></body>'
    assert near_invisible_text(pale) == [("x", "#f3f4f6", "#f3f4f6")]
    assert near_invisible_text('<body><p style="color:#f3f4f6">x</p></body>') != []
