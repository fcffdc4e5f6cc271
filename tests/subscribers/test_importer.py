"""Bulk import: idempotent, line-numbered rejections, consent recorded, nobody resurrected."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.subscribers import store
from service.subscribers.importer import ImportReport, import_batch, insert_new, read_addresses
from service.subscribers.models import Status, Subscriber
from tests.subscribers.factories import confirm

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

CSV = (
    "name,email\n"  # line 1
    "Sara,sara@example.com\n"  # 2
    "Bad,not-an-address\n"  # 3
    "Reza,REZA@Example.com\n"  # 4
    "Dup,reza@example.com\n"  # 5
    ",\n"  # 6: blank row, skipped
    'Evil,"evil@example.com\r\nBcc: all@example.com"\n'  # 7-8: a quoted CR/LF
    "Empty,\n"  # 9
    "Maryam,maryam@مثال.ایران\n"  # 10
)


def run(session: Session, text: str, *, source: str = "import:readers.csv",
        status: Status = Status.CONFIRMED) -> ImportReport:
    report = ImportReport()
    import_batch(session, read_addresses(io.StringIO(text)), source=source, status=status,
                 now=NOW, report=report)
    return report


def emails(session: Session) -> list[str]:
    return list(session.scalars(select(Subscriber.email).order_by(Subscriber.email)))


def test_import_adds_valid_rows_and_reports_rejected_lines(session: Session) -> None:
    report = run(session, CSV)
    assert report.added == 3
    assert report.already_present == 1  # the same address twice in one file
    assert [(r.line, r.value) for r in report.rejected] == [
        (3, "not-an-address"), (8, "evil@example.com\r\nBcc: all@example.com"), (9, ""),
    ]
    assert all(r.reason for r in report.rejected)
    assert emails(session) == ["maryam@xn--mgbh0fb.xn--mgba3a4f16a", "reza@example.com",
                               "sara@example.com"]


def test_import_records_consent_and_history(session: Session) -> None:
    run(session, CSV, source="import:old-list-2024.csv")
    sara = store.find_by_email(session, "sara@example.com")
    assert sara is not None
    assert sara.status is Status.CONFIRMED and sara.confirmed_at == NOW
    assert sara.consent_source == "import:old-list-2024.csv" and sara.consent_at == NOW
    assert [(e.kind, e.source) for e in sara.events] == [("import", "import:old-list-2024.csv")]


def test_importing_twice_adds_nothing_twice(session: Session) -> None:
    first = run(session, CSV)
    second = run(session, CSV)
    assert first.added == 3 and second.added == 0
    assert second.already_present == 4 and len(second.rejected) == 3
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 3


def test_import_never_resurrects_the_unsubscribed_or_the_erased(session: Session) -> None:
    consent = store.Consent("web:test")
    left = store.subscribe(session, "sara@example.com", consent, NOW).subscriber_id
    confirm(session, left, NOW)
    store.unsubscribe(session, left, NOW, "test")
    gone = store.subscribe(session, "reza@example.com", consent, NOW).subscriber_id
    store.erase(session, gone, NOW)
    report = run(session, CSV)
    assert report.added == 1 and report.suppressed == 1
    sara = store.find_by_email(session, "sara@example.com")
    assert sara is not None and sara.status is Status.UNSUBSCRIBED
    assert store.find_by_email(session, "reza@example.com") is None


def test_pending_import_owes_no_email_until_asked(session: Session) -> None:
    run(session, "email\nnew@example.com\n", status=Status.PENDING)
    new = store.find_by_email(session, "new@example.com")
    assert new is not None and new.status is Status.PENDING
    assert new.confirmed_at is None and new.confirmation_requested_at is None


def test_a_headerless_list_and_a_persian_header_with_bom(session: Session) -> None:
    assert run(session, "one@example.com\ntwo@example.com\n").added == 2
    assert run(session, "\ufeffنام,ایمیل\nعلی,three@example.com\n").added == 1
    assert emails(session) == ["one@example.com", "three@example.com", "two@example.com"]


def test_a_file_without_an_email_column_is_refused() -> None:
    with pytest.raises(ValueError, match="no email column"):
        list(read_addresses(io.StringIO("name,phone\nSara,0912\n")))
    assert list(read_addresses(io.StringIO(""))) == []


def test_an_overlong_or_multiline_source_is_kept_to_one_line(session: Session) -> None:
    run(session, "email\nlong@example.com\n", source="import:" + "x" * 300 + "\r\nmore")
    subscriber = store.find_by_email(session, "long@example.com")
    assert subscriber is not None
    assert len(subscriber.consent_source) == 200 and "\n" not in subscriber.consent_source


def test_an_address_subscribed_on_the_web_meanwhile_is_left_as_it_is(session: Session) -> None:
    # A reader subscribed between the importer's look-up and its insert.
    web = store.subscribe(session, "race@example.com", store.Consent("web:subscribe-page"), NOW)
    added = insert_new(session, ["first@example.com", "race@example.com", "last@example.com"],
                       source="import:list.csv", status=Status.CONFIRMED, now=NOW)
    assert added == 2
    assert emails(session) == ["first@example.com", "last@example.com", "race@example.com"]
    race = store.find_by_email(session, "race@example.com")
    assert race is not None and race.id == web.subscriber_id
    assert race.status is Status.PENDING and race.consent_source == "web:subscribe-page"
    last = store.find_by_email(session, "last@example.com")
    assert last is not None and [e.kind for e in last.events] == ["import"]
