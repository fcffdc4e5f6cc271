"""Persian text and dates: the exact mappings, ZWNJ kept, Jalali dates in Tehran."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from service.persian import (
    ZWNJ,
    jalali_date,
    jalali_datetime,
    jalali_day,
    normalize_text,
    parse_day,
    persian_digits,
    single_line,
)

TEHRAN = ZoneInfo("Asia/Tehran")


def test_normalisation_keeps_zwnj_and_maps_arabic_letters_and_digits() -> None:
    source = "گزارش\u200cها درباره برنامه هسته\u200cای: علي و كتاب ٢٠٢٥"
    result = normalize_text(source)
    assert result == "گزارش\u200cها درباره برنامه هسته\u200cای: علی و کتاب ۲۰۲۵"
    assert result.count(ZWNJ) == source.count(ZWNJ) == 2
    assert not any(ch in result for ch in "\u064a\u0643")
    assert not any("\u0660" <= ch <= "\u0669" for ch in result)


def test_normalisation_leaves_latin_digits_urls_and_spacing_alone() -> None:
    text = "https://example.com/news/2025?id=42  ۱۲ مورد"
    assert normalize_text(text) == text


def test_persian_digits_for_display() -> None:
    assert persian_digits(1404) == "۱۴۰۴"
    assert persian_digits("ساعت 08:30 و ٣") == "ساعت ۰۸:۳۰ و ۳"


def test_a_decimal_point_becomes_the_persian_separator_and_a_full_stop_does_not() -> None:
    assert persian_digits("8.33%") == "۸\u066b۳۳%"
    assert persian_digits("نسخهٔ 3. پایان.") == "نسخهٔ ۳. پایان."


def test_single_line_strips_header_breaking_and_bidi_characters() -> None:
    assert single_line("عنوان\r\nBcc: x@example.com") == "عنوان Bcc: x@example.com"
    assert single_line("\u202eخبر\u202c\x00 فوری\t") == "خبر فوری"
    assert single_line("نیم\u200cفاصله") == "نیم\u200cفاصله"  # ZWNJ is text, not a control


def test_nowruz_boundary_is_read_in_tehran_not_utc() -> None:
    nowruz = datetime(2025, 3, 20, 21, 0, tzinfo=UTC)  # 00:30 on 21 March in Tehran
    assert jalali_date(nowruz, TEHRAN) == "جمعه ۱ فروردین ۱۴۰۴"
    assert jalali_date(nowruz, ZoneInfo("UTC")) == "پنجشنبه ۳۰ اسفند ۱۴۰۳"
    just_before = datetime(2025, 3, 20, 20, 29, tzinfo=UTC)
    assert jalali_date(just_before, TEHRAN, weekday=False) == "۳۰ اسفند ۱۴۰۳"
    assert jalali_datetime(nowruz, TEHRAN) == "جمعه ۱ فروردین ۱۴۰۴، ساعت ۰۰:۳۰"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        jalali_date(datetime(2025, 3, 21), TEHRAN)


@pytest.mark.parametrize("typed", ["۱۴۰۵/۰۹/۰۸", "1405/9/8", "1405-09-08", " ۱۴۰۵ ۰۹ ۰۸ ", "2026-11-29",
                                   "٢٠٢٦/١١/٢٩", "۲۰۲۶-۱۱-۲۹"])
def test_a_day_is_read_as_jalali_or_iso_in_any_digits(typed: str) -> None:
    assert parse_day(typed) == date(2026, 11, 29)
    assert jalali_day(parse_day(typed)) == "۱۴۰۵/۰۹/۰۸"


@pytest.mark.parametrize("typed", ["", "1405/13/01", "1404/12/31", "2026-02-30", "29/11/2026", "دیروز",
                                   "1405/09/08 12:00"])
def test_a_day_that_does_not_exist_or_cannot_be_read_is_refused(typed: str) -> None:
    with pytest.raises(ValueError):
        parse_day(typed)
