"""The readers pages: search with filters and pages, one reader's record, actions, the export."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery.models import Bounce, Delivery, DeliveryStatus
from service.digests.models import IssueStatus
from service.runtime import Runtime
from service.staff.models import AuditEntry
from service.subscribers import store
from service.subscribers.importer import ImportReport, import_batch
from service.subscribers.models import Status, Subscriber
from tests.delivery.factories import make_issue
from tests.staff.factories import staff_account
from tests.subscribers.factories import confirm, make
from tests.web.desk.support import csrf_from, desk_client, sign_in

ROWS = re.compile(r'<td class="ltr address"><a href="/desk/readers/(\d+)">([^<]+)</a>')


def signed_in(rt: Runtime, role: str = "admin") -> TestClient:
    with unit_of_work(rt.sessions) as db:
        staff_account(db, f"{role}@example.com", role)
    client = desk_client(rt)
    assert sign_in(client, f"{role}@example.com").status_code == 303
    return client


def listed(page_html: str) -> list[str]:
    return [email for _, email in ROWS.findall(page_html)]


def audit_actions(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.sessions() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.actor, e.action, e.target) for e in entries if e.action.startswith("subscriber")]


def address(n: int) -> str:
    return f"reader{n:03d}@{'yahoo.com' if n % 3 == 0 else 'example.com'}"


def many_readers(rt: Runtime, count: int) -> None:
    start = utcnow() - timedelta(days=count)
    with unit_of_work(rt.sessions) as session:
        for n in range(count):
            at = start + timedelta(days=n)
            session.add(Subscriber(
                email=address(n),
                status=Status.PENDING if n % 5 == 0 else Status.CONFIRMED, created_at=at, updated_at=at,
                consent_source="import:print.csv" if n < 10 else "web:subscribe-page", consent_at=at))


def test_search_filters_and_keyset_pages_with_persian_counts(runtime: Runtime) -> None:
    many_readers(runtime, 120)
    client = signed_in(runtime, "editor")  # subscribers.view is enough to search and read
    first = client.get("/desk/readers")
    assert first.status_code == 200 and "۱۲۰ خواننده" in first.text
    assert listed(first.text)[:2] == ["reader119@example.com", "reader118@example.com"]
    assert len(listed(first.text)) == 50
    assert "/desk/readers/export" not in first.text  # exporting needs subscribers.manage

    pages = [listed(first.text)]
    next_link = re.search(r'href="([^"]+)" rel="next"', first.text)
    while next_link:
        page = client.get(next_link.group(1).replace("&amp;", "&"))
        pages.append(listed(page.text))
        next_link = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [email for shown in pages for email in shown] == [address(n) for n in range(119, -1, -1)]
    back = re.search(r'href="([^"]+)" rel="prev"', page.text)
    assert back and listed(client.get(back.group(1).replace("&amp;", "&")).text) == pages[1]

    found = client.get("/desk/readers", params={"address": "YAHOO", "status": "pending"})
    assert "۸ خواننده" in found.text  # n divisible by 3 and by 5, below 120
    assert all(e.endswith("@yahoo.com") for e in listed(found.text))
    sourced = client.get("/desk/readers", params={"source": "import:print.csv"})
    assert listed(sourced.text) == [address(n) for n in range(9, -1, -1)]
    assert '<option value="import:print.csv" selected>' in sourced.text


def test_days_of_joining_in_jalali_or_iso_and_an_unreadable_one(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        for email, at in (("before@example.com", "2026-11-28T20:29:59+00:00"),
                          ("on@example.com", "2026-11-28T20:30:00+00:00"),
                          ("after@example.com", "2026-11-29T20:30:00+00:00")):
            moment = datetime.fromisoformat(at)
            session.add(Subscriber(email=email, status=Status.CONFIRMED, created_at=moment,
                                   updated_at=moment, consent_source="web:test", consent_at=moment))
    client = signed_in(runtime, "chief-editor")
    for first, last in (("۱۴۰۵/۰۹/۰۸", "۱۴۰۵/۰۹/۰۸"), ("2026-11-29", "1405/9/8")):
        page = client.get("/desk/readers", params={"joined_from": first, "joined_to": last})
        assert listed(page.text) == ["on@example.com"], (first, last)
        assert "۸ آذر ۱۴۰۵" in page.text
    wrong = client.get("/desk/readers", params={"joined_from": "1405/13/40"})
    assert wrong.status_code == 422 and "روز آغاز خوانا نیست" in wrong.text
    assert 'aria-invalid="true"' in wrong.text
    short = client.get("/desk/readers", params={"address": "on"})
    assert short.status_code == 422 and "دست‌کم سه نویسه" in short.text


def test_a_readers_page_shows_consent_events_and_every_issue_sent(runtime: Runtime) -> None:
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        sid = store.subscribe(session, "sara@example.com",
                              store.Consent("web:embed", "203.0.113.9", "Firefox"), now).subscriber_id
        confirm(session, sid, now)
        one = make_issue(session, 1, IssueStatus.SENT)
        two = make_issue(session, 2, IssueStatus.SENT)
        sent = Delivery(issue_id=one.id, subscriber_id=sid, domain="example.com", status=DeliveryStatus.SENT,
                        attempts=1, created_at=now, updated_at=now, sent_at=now)
        failed = Delivery(issue_id=two.id, subscriber_id=sid, domain="example.com",
                          status=DeliveryStatus.FAILED, attempts=3, created_at=now, updated_at=now,
                          last_code=550, last_error="5.1.1 mailbox unavailable")
        session.add_all([sent, failed])
        session.flush()
        session.add(Bounce(received_at=now, delivery_id=sent.id, subscriber_id=sid, kind="soft"))
    client = signed_in(runtime, "editor")
    page = client.get(f"/desk/readers/{sid}")
    assert page.status_code == 200
    text = page.text
    assert "sara@example.com" in text and "عضو" in text
    assert "203.0.113.9" in text and "Firefox" in text and "web:embed" in text  # the consent
    assert "درخواست عضویت" in text and "تأیید" in text and "confirmation link" in text  # events
    assert "خبرنامه هفتگی، شماره ۱" in text or "خبرنامه هفتگی، شماره 1" in text
    assert "فرستاده شد" in text and "برگشت موقت" in text
    assert "ناموفق" in text and "550 5.1.1 mailbox unavailable" in text
    assert "شماره‌های فرستاده‌شده (۲)" in text
    assert re.search("[۰-۹]{4}", text)  # Jalali dates in Persian digits
    assert "/unsubscribe" not in text and "/erase" not in text  # editors read, they do not act
    assert client.get("/desk/readers/999999").status_code == 404


def test_unsubscribe_and_resend_from_the_desk_are_audited(runtime: Runtime) -> None:
    member = make(runtime, "member@example.com", Status.CONFIRMED)
    waiting = make(runtime, "waiting@example.com", Status.PENDING)
    client = signed_in(runtime)
    page = client.get(f"/desk/readers/{member}")
    token = csrf_from(page)
    done = client.post(f"/desk/readers/{member}/unsubscribe", data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == f"/desk/readers/{member}?done=unsubscribed"
    after = client.get(done.headers["location"])
    assert "عضویت این خواننده لغو شد" in after.text and "staff:admin@example.com" in after.text
    with runtime.sessions() as session:
        assert session.get(Subscriber, member).status is Status.UNSUBSCRIBED  # type: ignore[union-attr]

    # The subscribe form asked for its confirmation minutes ago: a second one must wait a day.
    refused = client.post(f"/desk/readers/{waiting}/resend-confirmation", data={"csrf_token": token})
    assert refused.headers["location"] == f"/desk/readers/{waiting}?refused=too-soon"
    shown = client.get(refused.headers["location"])
    assert "هر نشانی در روز بیش از یک ایمیل تأیید نمی‌گیرد" in shown.text
    assert "ایمیل بعدی را از" in shown.text
    with unit_of_work(runtime.sessions) as session:
        row = session.get(Subscriber, waiting)
        assert row is not None
        row.confirmation_requested_at = utcnow() - timedelta(days=1, minutes=1)
    resent = client.post(f"/desk/readers/{waiting}/resend-confirmation", data={"csrf_token": token})
    assert resent.headers["location"] == f"/desk/readers/{waiting}?done=resent"
    assert audit_actions(runtime) == [
        ("admin@example.com", "subscriber.unsubscribe", f"subscriber:{member}"),
        ("admin@example.com", "subscriber.resend_confirmation", f"subscriber:{waiting}")]
    no_token = client.post(f"/desk/readers/{waiting}/unsubscribe")
    assert no_token.status_code == 403


def test_erase_from_the_desk_asks_first_and_no_import_brings_the_reader_back(runtime: Runtime) -> None:
    sid = make(runtime, "leaving@example.com", Status.CONFIRMED)
    client = signed_in(runtime)
    ask = client.get(f"/desk/readers/{sid}/erase")
    assert ask.status_code == 200 and "leaving@example.com" in ask.text and "بازگشت‌پذیر نیست" in ask.text
    unconfirmed = client.post(f"/desk/readers/{sid}/erase", data={"csrf_token": csrf_from(ask)})
    assert unconfirmed.status_code == 422
    with runtime.sessions() as session:
        assert session.get(Subscriber, sid) is not None
    erased = client.post(f"/desk/readers/{sid}/erase", data={"csrf_token": csrf_from(ask), "confirm": "yes"})
    assert erased.status_code == 303 and erased.headers["location"] == "/desk/readers?done=erased"
    assert "پاک شد" in client.get(erased.headers["location"]).text
    assert client.get(f"/desk/readers/{sid}").status_code == 404
    with unit_of_work(runtime.sessions) as session:
        assert store.find_by_email(session, "leaving@example.com") is None
        assert store.is_erased(session, "leaving@example.com")
        report = ImportReport()
        import_batch(session, [(2, "leaving@example.com")], source="import:again.csv",
                     status=Status.CONFIRMED, now=utcnow(), report=report)
    assert (report.added, report.suppressed) == (0, 1)
    assert audit_actions(runtime) == [("admin@example.com", "subscriber.erase", f"subscriber:{sid}")]
    with runtime.sessions() as session:
        assert "leaving" not in " ".join(e.detail + e.target for e in session.scalars(select(AuditEntry)))


def test_the_export_has_the_pages_filters_iso_dates_and_is_audited(runtime: Runtime) -> None:
    many_readers(runtime, 30)
    client = signed_in(runtime)
    page = client.get("/desk/readers", params={"address": "yahoo", "status": "confirmed"})
    form = re.search(r'<form method="post" action="/desk/readers/export".*?</form>', page.text, re.S)
    assert form is not None
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(0)))
    assert fields["address"] == "yahoo" and fields["status"] == "confirmed"
    response = client.post("/desk/readers/export", data=fields)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="chapar-readers-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    expected = [f"reader{n:03d}@yahoo.com" for n in range(30) if n % 3 == 0 and n % 5 != 0]
    assert [r["email"] for r in rows] == expected  # oldest first
    assert all(r["status"] == "confirmed" and "T" in r["created_at"] and r["created_at"].endswith("+00:00")
               for r in rows)
    with runtime.sessions() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "subscribers.export"))
        assert (entry.actor, entry.detail) == ("admin@example.com", "address~yahoo status=confirmed")
    bad = client.post("/desk/readers/export", data={**fields, "joined_to": "never"})
    assert bad.status_code == 422 and "روز پایان خوانا نیست" in bad.text


def test_a_reader_id_path_leaves_other_reader_paths_free(runtime: Runtime) -> None:
    client = signed_in(runtime)
    # Only digits name a reader: /desk/readers/<word> is left to other pages (a 404 here), not a 422.
    assert client.get("/desk/readers/someone").status_code == 404
