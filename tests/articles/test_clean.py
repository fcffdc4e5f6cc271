"""Untrusted titles, summaries and URLs come out plain, small and Persian."""

from __future__ import annotations

from service.articles.clean import (
    SUMMARY_MAX_CHARS,
    absolute_url,
    canonical_url,
    clean_summary,
    clean_title,
    cut_at_word,
)

ZWNJ = "\u200c"


def test_title_is_plain_single_line_text() -> None:
    raw = "<b>گزارش</b> ويژه\r\nBcc: victim@example.com\x00\x1b &amp; تحليل"
    title = clean_title(raw)
    assert "\r" not in title and "\n" not in title
    assert "<" not in title and "\x00" not in title and "\x1b" not in title
    assert title == "گزارش ویژه Bcc: victim@example.com & تحلیل"


def test_arabic_letters_and_digits_become_persian_and_the_half_space_stays() -> None:
    title = clean_title(f"گزارش{ZWNJ}ها درباره برنامه هسته{ZWNJ}ای كره در سال ١٤٠٥ يك خبر")
    assert "\u064a" not in title and "\u0643" not in title
    assert "۱۴۰۵" in title
    assert title.count(ZWNJ) == 2
    assert "کره" in title and "یک" in title


def test_summary_keeps_a_small_allow_list_and_drops_everything_hostile() -> None:
    raw = (
        '<p onclick="steal()">خبر <b>مهم</b> <script>alert(1)</script>'
        '<a href="javascript:alert(1)">پیوند بد</a> <a href="https://example.com/x" onmouseover="x()">خوب</a>'
        '<img src=x onerror=alert(1)><iframe src="https://evil.example"></iframe>'
        '<style>body{display:none}</style></p>'
    )
    summary = clean_summary(raw)
    assert "script" not in summary and "alert" not in summary
    assert "onclick" not in summary and "onmouseover" not in summary and "onerror" not in summary
    assert "javascript:" not in summary
    assert "<img" not in summary and "<iframe" not in summary and "<p" not in summary
    assert "display:none" not in summary
    assert "<b>مهم</b>" in summary
    assert 'href="https://example.com/x"' in summary


def test_relative_links_in_a_summary_resolve_against_the_feed() -> None:
    summary = clean_summary('<a href="/world/x">بیشتر</a>', "https://news.example.com/feed.xml")
    assert 'href="https://news.example.com/world/x"' in summary


def test_long_summary_is_cut_at_a_word_boundary() -> None:
    words = ["کلمه" + str(i) for i in range(400)]
    summary = clean_summary("<p>" + " ".join(words) + "</p>")
    assert len(summary) <= SUMMARY_MAX_CHARS
    assert summary.endswith("…")
    assert summary[:-1].split(" ")[-1] in words  # the last word is whole


def test_cut_at_word_leaves_short_text_alone() -> None:
    assert cut_at_word("کوتاه", 10) == "کوتاه"
    assert cut_at_word("یک دو سه چهار پنج", 10) == "یک دو سه…"


def test_tracking_parameters_and_fragment_do_not_make_a_new_url() -> None:
    a = canonical_url("https://News.Example.com:443/a?id=3&utm_source=rss&fbclid=x#top")
    b = canonical_url("https://news.example.com/a?id=3")
    assert a == b == "https://news.example.com/a?id=3"


def test_only_http_urls_are_accepted() -> None:
    assert absolute_url("javascript:alert(1)", None) is None
    assert absolute_url("file:///etc/passwd", None) is None
    assert absolute_url("/a/b", "https://news.example.com/feed") == "https://news.example.com/a/b"
    assert absolute_url("data:text/html,x", "https://news.example.com/") is None


def test_cut_at_word_never_cuts_inside_a_word() -> None:
    long_word = f"گزارش{ZWNJ}های{ZWNJ}هفتگی{ZWNJ}دربارهٔ{ZWNJ}برنامه{ZWNJ}هسته{ZWNJ}ای"
    # The only space before the limit is early on: the word is dropped, not split.
    assert cut_at_word(f"یک دو {long_word} پایان", 20) == "یک دو…"
    text = " ".join([f"گزارش{ZWNJ}ها،", "«هسته‌ای»", "برنامه‌ریزی؛", "نشست", "COP31", "ادامه…"] * 20)
    for limit in range(12, len(text)):
        cut = cut_at_word(text, limit)
        assert len(cut) <= limit and cut.endswith("…")
        kept = cut[:-1].split(" ")
        words = text.split(" ")[: len(kept)]
        assert kept[:-1] == words[:-1]
        # The last word is whole; only a trailing comma or semicolon gives way to the ellipsis.
        assert kept[-1] == words[-1].rstrip("،؛"), (limit, cut)
        assert cut.count(ZWNJ) == sum(w.count(ZWNJ) for w in words)
