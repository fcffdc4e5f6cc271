"""Persian text and dates: letter and digit normalisation, Persian digits, Jalali dates.

General Persian NLP normalisers (hazm, parsivar) also rewrite URLs, Latin digits and
spacing; Chapar needs exactly three mappings applied to untrusted text, so they are
spelled out here rather than pulled in with a library's defaults.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import jdatetime

ZWNJ = "\u200c"

# Arabic letters that have a distinct Persian form, and Arabic-Indic digits.
_LETTERS = {"\u064a": "\u06cc", "\u0643": "\u06a9", "\u0649": "\u06cc"}
_ARABIC_INDIC_TO_PERSIAN = {chr(0x0660 + i): chr(0x06F0 + i) for i in range(10)}
_LATIN_TO_PERSIAN = {chr(0x30 + i): chr(0x06F0 + i) for i in range(10)}
_TEXT_TABLE = str.maketrans({**_LETTERS, **_ARABIC_INDIC_TO_PERSIAN})
_DIGITS_TABLE = str.maketrans(_LATIN_TO_PERSIAN)
_TO_LATIN_TABLE = str.maketrans({**{chr(0x06F0 + i): str(i) for i in range(10)},
                                 **{chr(0x0660 + i): str(i) for i in range(10)}})
# A day typed by a person: year, month and day separated by / - . or a space.
_DAY = re.compile(r"(\d{4})\s*[/\-.\s]\s*(\d{1,2})\s*[/\-.\s]\s*(\d{1,2})")
# Years below this are Solar Hijri (1405 is 2026); above it, Gregorian.
_GREGORIAN_FROM = 1700
# C0/C1 controls except TAB and LF; CR is handled by callers that keep lines.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidi embedding/override controls can visually reorder text (Trojan Source style).
_BIDI_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")
_DECIMAL_POINT = re.compile("(?<=[\u06f0-\u06f9])\\.(?=[\u06f0-\u06f9])")

WEEKDAYS = ("دوشنبه", "سه‌شنبه", "چهارشنبه", "پنجشنبه", "جمعه", "شنبه", "یکشنبه")
MONTHS = (
    "فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
    "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند",
)


def normalize_text(text: str) -> str:
    """Map Arabic ي/ك/ى and Arabic-Indic digits to Persian; keep ZWNJ and Latin digits."""
    return text.translate(_TEXT_TABLE)


def single_line(text: str) -> str:
    """Untrusted text made safe for a title or a header: no controls, no CR/LF runs."""
    text = _BIDI_OVERRIDES.sub("", text)
    text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    text = _CONTROL.sub("", text)
    return re.sub(r" {2,}", " ", text).strip()


def persian_digits(value: object) -> str:
    """Latin and Arabic-Indic digits to Persian digits; use on text, never on URLs.

    A point between digits becomes the Persian decimal separator (۸٫۳۳, not ۸.۳۳).
    """
    text = str(value).translate(_DIGITS_TABLE).translate(_TEXT_TABLE)
    return _DECIMAL_POINT.sub("\u066b", text)


def to_jalali(moment: datetime, tz: ZoneInfo) -> jdatetime.datetime:
    """Convert to the local zone first, then to the Solar Hijri calendar."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: cannot tell which day it is in Tehran")
    local = moment.astimezone(tz)
    return jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None))


def jalali_date(moment: datetime, tz: ZoneInfo, *, weekday: bool = True) -> str:
    """A Persian date such as «جمعه ۷ آذر ۱۴۰۵» in the given zone."""
    local = moment.astimezone(tz)
    j = to_jalali(moment, tz)
    text = f"{j.day} {MONTHS[j.month - 1]} {j.year}"
    if weekday:
        text = f"{WEEKDAYS[local.weekday()]} {text}"
    return persian_digits(text)


def jalali_datetime(moment: datetime, tz: ZoneInfo) -> str:
    """Date and time, for example «جمعه ۷ آذر ۱۴۰۵، ساعت ۰۸:۰۰»."""
    local = moment.astimezone(tz)
    return f"{jalali_date(moment, tz)}، ساعت {persian_digits(local.strftime('%H:%M'))}"


def latin_digits(text: str) -> str:
    """Persian and Arabic-Indic digits to Latin ones, for parsing what a person typed."""
    return text.translate(_TO_LATIN_TABLE)


def parse_day(text: str) -> date:
    """A calendar day typed as Jalali («۱۴۰۵/۰۹/۰۸», 1405-9-8) or ISO (2026-11-29), in any digits.

    The year tells the calendars apart. Raises ValueError for anything else, or a day
    that does not exist (۱۴۰۵/۱۲/۳۱ in a common year).
    """
    found = _DAY.fullmatch(latin_digits(text.strip()))
    if found is None:
        raise ValueError(f"not a day: {text!r}")
    year, month, day = (int(part) for part in found.groups())
    if year >= _GREGORIAN_FROM:
        return date(year, month, day)
    gregorian: date = jdatetime.date(year, month, day).togregorian()
    return gregorian


def jalali_day(day: date) -> str:
    """A day as editors type it, «۱۴۰۵/۰۹/۰۸»."""
    j = jdatetime.date.fromgregorian(date=day)
    return persian_digits(f"{j.year:04d}/{j.month:02d}/{j.day:02d}")
