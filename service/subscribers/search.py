"""Finding readers: by part of the address, status, source and day of joining.

One filter, read the same way by the desk's readers page, its CSV export and
`chapar subscribers export`. Pages are keyset pages on (created_at, id), newest
first, so a later page costs what the first does on a million rows. On PostgreSQL a
trigram index on lower(email) (migration 0015) serves the partial, case-insensitive
match; SQLite does a plain LIKE.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, Row, bindparam, func, select, text, tuple_
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from service.db import UtcDateTime, is_sqlite
from service.persian import latin_digits, parse_day, single_line
from service.subscribers.models import Status, Subscriber

PAGE_SIZE = 50
# A trigram index finds a fragment of three characters or more; a shorter one that few
# addresses contain would read the whole table (360 ms on a million rows).
SHORTEST_PART = 3
# Beyond this the page says "more than": an exact count reads every match (a tenth of a second
# for a fragment a fifth of a million readers share), this reads at most this many.
COUNT_CAP = 1000
SOURCES_SHOWN = 200
EXPORT_BATCH = 1000
EXPORT_COLUMNS = ("email", "status", "created_at", "confirmed_at", "unsubscribed_at",
                  "consent_source", "consent_at", "consent_ip")


class FilterError(ValueError):
    """A filter value a person typed that cannot be read; `persian` says which and why."""

    def __init__(self, field: str, persian: str, english: str) -> None:
        super().__init__(english)
        self.field = field
        self.persian = persian


@dataclass(frozen=True)
class ReaderFilter:
    """Which readers: every condition given must hold. Instants are UTC.

    `address` is any part of the address in any case; `source` is the consent source
    exactly; `joined_from` (inclusive) and `joined_before` (exclusive) bound created_at.
    """

    address: str = ""
    status: Status | None = None
    source: str = ""
    joined_from: datetime | None = None
    joined_before: datetime | None = None

    @classmethod
    def from_text(cls, tz: ZoneInfo, *, address: str = "", status: str = "", source: str = "",
                  joined_from: str = "", joined_to: str = "") -> ReaderFilter:
        """The filter from what a person typed; days (Jalali or ISO) are whole days in `tz`.

        Raises FilterError naming the field that cannot be read.
        """
        try:
            chosen = Status(status) if status else None
        except ValueError:
            raise FilterError("status", "وضعیت انتخاب‌شده وجود ندارد.", f"unknown status {status!r}; "
                              f"choose one of {', '.join(s.value for s in Status)}") from None
        part = latin_digits(single_line(address)).lower()  # a Persian keyboard types ۱۲ for 12
        if 0 < len(part) < SHORTEST_PART:
            raise FilterError("address", "دست‌کم سه نویسه از نشانی را بنویسید.",
                              f"write at least {SHORTEST_PART} characters of the address")
        first = _day(joined_from, "joined_from", "روز آغاز")
        last = _day(joined_to, "joined_to", "روز پایان")
        if first and last and last < first:
            raise FilterError("joined_to", "روز پایان پیش از روز آغاز است.",
                              "the last day is before the first day")
        return cls(
            address=part,
            status=chosen,
            source=single_line(source),
            joined_from=start_of(first, tz) if first else None,
            joined_before=start_of(last + timedelta(days=1), tz) if last else None,
        )

    def describe(self) -> str:
        """The conditions in one line, for the audit log."""
        parts = [f"address~{self.address}" if self.address else "",
                 f"status={self.status.value}" if self.status else "",
                 f"source={self.source}" if self.source else "",
                 f"joined>={self.joined_from.isoformat()}" if self.joined_from else "",
                 f"joined<{self.joined_before.isoformat()}" if self.joined_before else ""]
        return " ".join(p for p in parts if p) or "all"


def _day(value: str, field: str, label: str) -> date | None:
    if not value.strip():
        return None
    try:
        return parse_day(value)
    except ValueError:
        raise FilterError(field, f"{label} خوانا نیست؛ مانند ۱۴۰۵/۰۹/۰۸ یا 2026-11-29 بنویسید.",
                          f"{field}: not a day: {value!r} (write 1405/09/08 or 2026-11-29)") from None


def start_of(day: date, tz: ZoneInfo) -> datetime:
    """The instant a day begins in `tz`, in UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def like_escaped(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def conditions(f: ReaderFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if f.address:
        # lower(email) is the expression the trigram index is built on: keep them the same.
        found.append(func.lower(Subscriber.email).like(f"%{like_escaped(f.address)}%", escape="\\"))
    if f.status is not None:
        found.append(Subscriber.status == f.status)
    if f.source:
        found.append(Subscriber.consent_source == f.source)
    if f.joined_from is not None:
        found.append(Subscriber.created_at >= f.joined_from)
    if f.joined_before is not None:
        found.append(Subscriber.created_at < f.joined_before)
    return found


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (created_at, id) of its last row, as an opaque token."""

    created_at: datetime
    id: int

    def token(self) -> str:
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def read(cls, token: str) -> Cursor | None:
        """The cursor a token names, or None for anything else (the first page)."""
        micros, _, ident = token.partition(".")
        if not (token.isascii() and micros.lstrip("-").isdigit() and ident.isdigit()) or len(token) > 40:
            return None
        try:
            return cls(EPOCH + timedelta(microseconds=int(micros)), int(ident))
        except OverflowError:
            return None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReaderPage:
    readers: list[Subscriber]
    newer: Cursor | None  # the first row's cursor when newer rows exist (a previous page)
    older: Cursor | None  # the last row's cursor when older rows exist (a next page)


def older_than_cursor(cursor: Cursor) -> ColumnElement[bool]:
    """Readers who joined before the cursor's (in (created_at, id) order)."""
    return tuple_(Subscriber.created_at, Subscriber.id) < tuple_(_instant(cursor.created_at), cursor.id)


def newer_than_cursor(cursor: Cursor) -> ColumnElement[bool]:
    """Readers who joined after the cursor's."""
    return tuple_(Subscriber.created_at, Subscriber.id) > tuple_(_instant(cursor.created_at), cursor.id)


def _instant(moment: datetime) -> BindParameter[datetime]:
    return bindparam(None, moment, type_=UtcDateTime())


def search(session: Session, f: ReaderFilter, *, older_than: Cursor | None = None,
           newer_than: Cursor | None = None, size: int = PAGE_SIZE) -> ReaderPage:
    """One page of matching readers, newest first: the first page, or the page after
    `older_than`, or the page before `newer_than`."""
    _custom_plans(session)
    query = select(Subscriber).where(*conditions(f)).limit(size + 1)
    backwards = newer_than is not None and older_than is None
    if backwards:
        assert newer_than is not None
        query = query.where(newer_than_cursor(newer_than)).order_by(Subscriber.created_at, Subscriber.id)
    else:
        if older_than is not None:
            query = query.where(older_than_cursor(older_than))
        query = query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
    rows = list(session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    first = Cursor(rows[0].created_at, rows[0].id) if rows else None
    last = Cursor(rows[-1].created_at, rows[-1].id) if rows else None
    if backwards:
        return ReaderPage(rows, newer=first if more else None, older=last)
    return ReaderPage(rows, newer=first if older_than is not None else None,
                      older=last if more else None)


@dataclass(frozen=True)
class Matches:
    """How many readers match, up to the cap, and whether there are more than that."""

    count: int
    more: bool


def search_and_count(session: Session, f: ReaderFilter, *, older_than: Cursor | None = None,
                     newer_than: Cursor | None = None, size: int = PAGE_SIZE,
                     cap: int = COUNT_CAP) -> tuple[ReaderPage, Matches]:
    """What the readers page shows: one page, and how many match in all.

    A first page with nothing after it is every match: no second query is needed.
    """
    page = search(session, f, older_than=older_than, newer_than=newer_than, size=size)
    if older_than is None and newer_than is None and page.older is None:
        return page, Matches(len(page.readers), False)
    found, more = count(session, f, cap)
    return page, Matches(found, more)


def count(session: Session, f: ReaderFilter, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many readers match, up to `cap`; and whether there are more than that."""
    _custom_plans(session)
    first = select(Subscriber.id).where(*conditions(f)).limit(cap + 1).subquery()
    found = session.scalar(select(func.count()).select_from(first)) or 0
    return min(found, cap), found > cap


def _custom_plans(session: Session) -> None:
    """Plan each search for its own values on PostgreSQL.

    psycopg prepares a statement run five times, and PostgreSQL may then settle on one
    generic plan for every pattern: fine for "gmail", a scan of the whole table for a
    pattern only ten readers match. Planning costs well under a millisecond.
    """
    if not is_sqlite(session):
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def sources(session: Session, limit: int = SOURCES_SHOWN) -> list[str]:
    """The distinct consent sources in alphabetical order, at most `limit`.

    One index probe per source (a loose scan of ix_subscribers_consent_source), not a
    read of every row.
    """
    rows = session.execute(text(
        "WITH RECURSIVE s(src) AS ("
        " SELECT min(consent_source) FROM subscribers"
        " UNION ALL"
        " SELECT (SELECT min(consent_source) FROM subscribers WHERE consent_source > s.src)"
        " FROM s WHERE s.src IS NOT NULL)"
        " SELECT src FROM s WHERE src IS NOT NULL LIMIT :limit"), {"limit": limit})
    return [row[0] for row in rows]


# What an export line holds (plain columns, not whole rows: three times faster to read).
EXPORTED = (Subscriber.id, Subscriber.email, Subscriber.status, Subscriber.created_at,
            Subscriber.confirmed_at, Subscriber.unsubscribed_at, Subscriber.consent_source,
            Subscriber.consent_at, Subscriber.consent_ip)
ExportedRow = Row[int, str, Status, datetime, datetime | None, datetime | None, str, datetime, str | None]


def matching(sessions: sessionmaker[Session], f: ReaderFilter,
             batch: int = EXPORT_BATCH) -> Iterator[ExportedRow]:
    """Every matching reader's exported columns (EXPORTED), oldest first, `batch` at a time.

    Each batch has its own short session, so an export of a million rows neither
    holds a transaction open while a slow client downloads nor keeps rows in memory.
    """
    after: Cursor | None = None
    while True:
        with sessions() as session:
            _custom_plans(session)
            query = (select(*EXPORTED).where(*conditions(f))
                     .order_by(Subscriber.created_at, Subscriber.id).limit(batch))
            if after is not None:
                query = query.where(newer_than_cursor(after))
            rows = list(session.execute(query))
        yield from rows
        if len(rows) < batch:
            return
        after = Cursor(rows[-1].created_at, rows[-1].id)


def csv_row(s: ExportedRow) -> list[str]:
    """One reader as an export line: ISO instants in UTC."""

    def iso(value: datetime | None) -> str:
        return value.isoformat() if value else ""

    return [s.email, s.status.value, iso(s.created_at), iso(s.confirmed_at),
            iso(s.unsubscribed_at), s.consent_source, iso(s.consent_at), s.consent_ip or ""]


class _Line:
    """A file-like object that hands back what csv.writer wrote, one line at a time."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, value: str) -> int:
        self.text = value
        return len(value)


def csv_lines(readers: Iterable[ExportedRow]) -> Iterator[str]:
    """The export as CSV text, the header first, one line at a time (for streaming)."""
    line = _Line()
    writer = csv.writer(line)
    writer.writerow(EXPORT_COLUMNS)
    yield line.text
    for reader in readers:
        writer.writerow(csv_row(reader))
        yield line.text


def write_csv(out: TextIO, sessions: sessionmaker[Session], f: ReaderFilter) -> int:
    """Write every matching reader to `out` as CSV; how many were written."""
    lines = csv_lines(matching(sessions, f))
    out.write(next(lines))
    written = 0
    for line in lines:
        out.write(line)
        written += 1
    return written
