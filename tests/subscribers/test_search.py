"""Finding readers on PostgreSQL and SQLite: partial and case-blind, filters, keyset pages."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import search
from service.subscribers.models import Status, Subscriber
from service.subscribers.search import Cursor, FilterError, ReaderFilter

TEHRAN = ZoneInfo("Asia/Tehran")
# 1405/09/08 begins in Tehran at this instant (UTC+3:30).
DAY_STARTS = datetime(2026, 11, 28, 20, 30, tzinfo=UTC)


def reader(session: Session, email: str, at: datetime, status: Status = Status.CONFIRMED,
           source: str = "web:subscribe-page") -> Subscriber:
    row = Subscriber(email=email, status=status, created_at=at, updated_at=at, consent_source=source,
                     consent_at=at, confirmed_at=at if status is Status.CONFIRMED else None)
    session.add(row)
    session.flush()
    return row


def emails(rows: list[Subscriber]) -> list[str]:
    return [r.email for r in rows]


def found(session: Session, f: ReaderFilter) -> list[str]:
    return emails(search.search(session, f, size=100).readers)


def test_any_part_of_the_address_in_any_case(session: Session) -> None:
    at = DAY_STARTS
    reader(session, "sara.ahmadi@gmail.com", at)
    reader(session, "reza_karimi@yahoo.com", at + timedelta(minutes=1))
    reader(session, "rezaxkarimi@yahoo.com", at + timedelta(minutes=2))
    reader(session, "100%sure@example.org", at + timedelta(minutes=3))
    reader(session, "print1403@example.org", at + timedelta(minutes=4))
    assert found(session, ReaderFilter.from_text(TEHRAN, address="SaRa.AHM")) == ["sara.ahmadi@gmail.com"]
    assert found(session, ReaderFilter.from_text(TEHRAN, address="  @Yahoo.COM ")) == [
        "rezaxkarimi@yahoo.com", "reza_karimi@yahoo.com"]
    # LIKE's wildcards are letters here: "_" is an underscore and "%" a percent sign.
    assert found(session, ReaderFilter.from_text(TEHRAN, address="reza_k")) == ["reza_karimi@yahoo.com"]
    assert found(session, ReaderFilter.from_text(TEHRAN, address="0%s")) == ["100%sure@example.org"]
    assert found(session, ReaderFilter.from_text(TEHRAN, address="nobody")) == []
    # Digits typed on a Persian keyboard are the address's Latin ones.
    assert found(session, ReaderFilter.from_text(TEHRAN, address="۱۴۰۳")) == ["print1403@example.org"]


def test_status_source_and_days_of_joining_in_tehran(session: Session) -> None:
    late_on_the_7th = reader(session, "seventh@example.com", DAY_STARTS - timedelta(seconds=1))
    early_on_the_8th = reader(session, "eighth@example.com", DAY_STARTS, Status.PENDING)
    reader(session, "ninth@example.com", DAY_STARTS + timedelta(days=1), source="import:print.csv")
    reader(session, "gone@example.com", DAY_STARTS + timedelta(days=1, hours=1), Status.UNSUBSCRIBED,
           source="import:print.csv")
    on_the_8th = ["eighth@example.com"]
    for first, last in (("۱۴۰۵/۰۹/۰۸", "۱۴۰۵/۰۹/۰۸"), ("1405-9-8", "1405/09/08"),
                        ("2026-11-29", "٢٠٢٦-١١-٢٩")):
        assert found(session, ReaderFilter.from_text(TEHRAN, joined_from=first, joined_to=last)) == on_the_8th
    assert found(session, ReaderFilter.from_text(TEHRAN, joined_to="1405/09/07")) == [late_on_the_7th.email]
    assert found(session, ReaderFilter.from_text(TEHRAN, joined_from="1405/09/08")) == [
        "gone@example.com", "ninth@example.com", early_on_the_8th.email]
    assert found(session, ReaderFilter.from_text(TEHRAN, status="pending")) == on_the_8th
    assert found(session, ReaderFilter.from_text(TEHRAN, source="import:print.csv")) == [
        "gone@example.com", "ninth@example.com"]
    assert found(session, ReaderFilter.from_text(TEHRAN, source="import:print", address="example")) == []
    narrow = ReaderFilter.from_text(TEHRAN, source="import:print.csv", status="unsubscribed",
                                    address="GONE")
    assert found(session, narrow) == ["gone@example.com"]
    assert search.sources(session) == ["import:print.csv", "web:subscribe-page"]


@pytest.mark.parametrize(("field", "values"), [
    ("address", {"address": "ab"}),
    ("status", {"status": "asleep"}),
    ("joined_from", {"joined_from": "1405/13/01"}),
    ("joined_to", {"joined_to": "yesterday"}),
    ("joined_to", {"joined_from": "1405/09/08", "joined_to": "1405/09/07"}),
])
def test_what_cannot_be_read_is_named(field: str, values: dict[str, str]) -> None:
    with pytest.raises(FilterError) as refused:
        ReaderFilter.from_text(TEHRAN, **values)
    assert refused.value.field == field and refused.value.persian


def test_keyset_pages_newest_first_forward_and_back(session: Session) -> None:
    # Five came in one import at one instant: the id orders them.
    at = DAY_STARTS
    names = [reader(session, f"r{n}@example.com", at if 2 <= n <= 6 else at + timedelta(hours=n)).email
             for n in range(1, 9)]
    f = ReaderFilter(address="example")
    newest_first = [names[7], names[6], names[0], names[5], names[4], names[3], names[2], names[1]]
    first = search.search(session, f, size=3)
    assert emails(first.readers) == newest_first[:3] and first.newer is None and first.older
    second = search.search(session, f, older_than=first.older, size=3)
    assert emails(second.readers) == newest_first[3:6] and second.newer and second.older
    third = search.search(session, f, older_than=second.older, size=3)
    assert emails(third.readers) == newest_first[6:] and third.older is None and third.newer
    back = search.search(session, f, newer_than=third.newer, size=3)
    assert emails(back.readers) == newest_first[3:6] and back.newer and back.older
    assert emails(search.search(session, f, newer_than=back.newer, size=3).readers) == newest_first[:3]
    assert search.search(session, f, newer_than=back.newer, size=3).newer is None
    # A cursor survives its trip through a link.
    token = second.older.token() if second.older else ""
    assert Cursor.read(token) == second.older
    assert Cursor.read("not-a-cursor") is None and Cursor.read("") is None


def test_the_count_stops_at_its_cap(session: Session) -> None:
    for n in range(7):
        reader(session, f"c{n}@example.com", DAY_STARTS + timedelta(minutes=n),
               Status.PENDING if n < 2 else Status.CONFIRMED)
    assert search.count(session, ReaderFilter(), cap=10) == (7, False)
    assert search.count(session, ReaderFilter(), cap=5) == (5, True)
    assert search.count(session, ReaderFilter(status=Status.PENDING), cap=5) == (2, False)


def test_a_first_page_holding_every_match_is_its_own_count(session: Session) -> None:
    for n in range(5):
        reader(session, f"p{n}@example.com", DAY_STARTS + timedelta(minutes=n))
    page, matches = search.search_and_count(session, ReaderFilter(), size=5, cap=3)
    assert len(page.readers) == 5 and matches == search.Matches(5, False)  # no count query, no cap
    page, matches = search.search_and_count(session, ReaderFilter(), size=4, cap=3)
    assert page.older is not None and matches == search.Matches(3, True)
    later, matches = search.search_and_count(session, ReaderFilter(), older_than=page.older, size=4)
    assert emails(later.readers) == ["p0@example.com"] and matches == search.Matches(5, False)


def test_the_export_reads_every_match_in_batches(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        for n in range(12):  # ten at one instant, as an import makes them
            reader(session, f"e{n:02d}@example.com", DAY_STARTS + timedelta(minutes=max(0, n - 9)),
                   Status.PENDING if n % 4 == 0 else Status.CONFIRMED)
    everyone = list(search.matching(runtime.sessions, ReaderFilter(), batch=5))
    assert [r.email for r in everyone] == [f"e{n:02d}@example.com" for n in range(12)]
    out = io.StringIO()
    assert search.write_csv(out, runtime.sessions, ReaderFilter(status=Status.PENDING)) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["email"] for r in rows] == ["e00@example.com", "e04@example.com", "e08@example.com"]
    assert rows[0]["created_at"] == DAY_STARTS.isoformat() and rows[0]["confirmed_at"] == ""


@pytest.mark.parametrize("backend", ["postgresql"])  # pg_trgm; SQLite reads the table
def test_postgresql_finds_a_fragment_through_the_trigram_index(session: Session) -> None:
    reader(session, "sara.ahmadi@gmail.com", DAY_STARTS)
    f = ReaderFilter.from_text(TEHRAN, address="Ahmadi@G")
    query = select(Subscriber).where(*search.conditions(f))
    # Named parameters: no psycopg escaping of the pattern's percent signs in the literal.
    sql = str(query.compile(dialect=postgresql.dialect(paramstyle="named"),
                            compile_kwargs={"literal_binds": True}))
    # A small table is read whole whatever the indexes; forbid that to see which index fits.
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(session.execute(text("EXPLAIN " + sql)).scalars())
    assert "ix_subscribers_email_trgm" in plan, plan
    assert found(session, f) == ["sara.ahmadi@gmail.com"]
