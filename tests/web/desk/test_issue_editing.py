"""The issue page, its preview and the test send, driven over HTTP as a browser would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery.message import IssueMessage, Recipient
from service.delivery.models import Delivery
from service.digests import editing
from service.digests.build import build_issue
from service.instance_keys import MESSAGE_ID, instance_key
from service.mail.placeholders import sample_personal_links
from service.runtime import Runtime
from service.staff.models import AuditEntry
from tests.digests.factories import article
from tests.staff.factories import staff_account
from tests.support.smtp import SmtpRecorder
from tests.web.desk.support import csrf_from, desk_client, sign_in


@pytest.fixture
def seeded(runtime: Runtime) -> Iterator[Runtime]:
    """The runtime with a seed list for test sends, one draft issue and two staff accounts."""
    rt = Runtime.from_settings(runtime.settings.model_copy(
        update={"test_send_addresses": "seed@example.com, Editor@Example.com"}))
    now = utcnow()
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "editor@example.com", "editor")
        staff_account(db, "viewer@example.com", "viewer")
        for n in range(3):
            article(db, now - timedelta(hours=n + 1), title=f"خبر {n + 1}", section="ورزش",
                    image_url="https://news.example.com/i.jpg")
        assert build_issue(db, rt.settings, now).issue is not None
    yield rt
    rt.close()


def signed_in(rt: Runtime, email: str = "editor@example.com") -> object:
    client = desk_client(rt)
    assert sign_in(client, email).status_code == 303
    return client


def order(rt: Runtime) -> list[str]:
    with rt.sessions() as db:
        return [item.title for item in editing.ordered_items(editing.find_issue(db, 1))]


def item_ids(rt: Runtime) -> list[int]:
    with rt.sessions() as db:
        return [item.id for item in editing.ordered_items(editing.find_issue(db, 1))]


def test_an_editor_reorders_and_leads_and_a_missing_token_is_refused(seeded: Runtime) -> None:
    client = signed_in(seeded)
    page = client.get("/desk/issues/1")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "خبر 3" in page.text and "ساختن دوبارهٔ پیش‌نویس" in page.text
    assert 'hx-get="/desk/issues/1/review"' in page.text and 'hx-get="/desk/issues/1/checks"' in page.text
    token = csrf_from(page)
    third = item_ids(seeded)[2]
    refused = client.post(f"/desk/issues/1/articles/{third}/move",  # type: ignore[attr-defined]
                          data={"direction": "up"})
    assert refused.status_code == 403 and order(seeded) == ["خبر 1", "خبر 2", "خبر 3"]
    wrong = client.post(f"/desk/issues/1/articles/{third}/move",  # type: ignore[attr-defined]
                        data={"direction": "up", "csrf_token": "forged"})
    assert wrong.status_code == 403
    moved = client.post(f"/desk/issues/1/articles/{third}/move",  # type: ignore[attr-defined]
                        data={"direction": "up", "csrf_token": token})
    assert moved.status_code == 303 and moved.headers["location"] == "/desk/issues/1?done=moved"
    assert order(seeded) == ["خبر 1", "خبر 3", "خبر 2"]
    led = client.post("/desk/issues/1/lead", data={"item": str(third),  # type: ignore[attr-defined]
                                                   "csrf_token": token})
    assert led.status_code == 303 and order(seeded)[0] == "خبر 3"
    stuck = client.post(f"/desk/issues/1/articles/{item_ids(seeded)[1]}/move",  # type: ignore[attr-defined]
                        data={"direction": "up", "csrf_token": token})
    assert stuck.status_code == 422 and "بالاتر یا پایین‌تر نمی‌رود" in stuck.text
    with seeded.sessions() as db:
        mine = select(AuditEntry).where(AuditEntry.actor == "editor@example.com")
        done = [e.action for e in db.scalars(mine)]
    assert "issue.move" in done and "issue.lead" in done


def test_text_is_sanitised_and_exclude_grouping_and_rebuild_work_through_the_page(
        seeded: Runtime) -> None:
    client = signed_in(seeded)
    token = csrf_from(client.get("/desk/issues/1"))  # type: ignore[attr-defined]
    saved = client.post("/desk/issues/1/text", data={  # type: ignore[attr-defined]
        "csrf_token": token, "subject": "عنوان ویژه", "preheader": "",
        "intro": '<img src=x onerror="alert(1)">سلام\n\nببینید https://news.example.com/x'})
    assert saved.status_code == 303
    excluded = client.post(f"/desk/issues/1/articles/{item_ids(seeded)[1]}/exclude",  # type: ignore[attr-defined]
                           data={"csrf_token": token})
    assert excluded.status_code == 303
    grouped = client.post("/desk/issues/1/grouping",  # type: ignore[attr-defined]
                          data={"csrf_token": token, "grouped": "true"})
    assert grouped.status_code == 303
    with seeded.sessions() as db:
        issue = editing.find_issue(db, 1)
        assert issue.subject == "عنوان ویژه" and issue.intro == "سلام\n\nببینید https://news.example.com/x"
        assert "onerror" not in issue.html and 'href="https://news.example.com/x"' in issue.html
        assert "section-title" in issue.html.split('role="article"')[1]
        assert [i.title for i in editing.ordered_items(issue)] == ["خبر 1", "خبر 3"]
    again = client.post("/desk/issues/1/rebuild", data={"csrf_token": token})  # type: ignore[attr-defined]
    assert again.status_code == 303
    page = client.get("/desk/issues/1?done=rebuilt")  # type: ignore[attr-defined]
    assert "پیش‌نویس دوباره ساخته شد" in page.text and 'value="عنوان ویژه"' in page.text
    assert "خبر 2" not in page.text  # excluded stays out


def test_a_viewer_reads_the_page_but_has_no_forms_and_cannot_post(seeded: Runtime) -> None:
    client = signed_in(seeded, "viewer@example.com")
    page = client.get("/desk/issues/1")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "خبر 1" in page.text
    assert "/articles/" not in page.text and "ذخیرهٔ متن" not in page.text
    token = csrf_from(client.get("/desk/api"))  # type: ignore[attr-defined]
    posted = client.post("/desk/issues/1/text", data={"csrf_token": token,  # type: ignore[attr-defined]
                                                      "subject": "x"})
    assert posted.status_code == 403
    assert client.get("/desk/issues/1/preview").status_code == 403  # type: ignore[attr-defined]
    assert client.get("/desk/issues/9").status_code == 404  # type: ignore[attr-defined]


def decoded_parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


def test_a_test_send_reaches_the_editor_and_the_seed_list_and_no_ledger(seeded: Runtime,
                                                                        smtp: SmtpRecorder) -> None:
    client = signed_in(seeded)
    page = client.get("/desk/issues/1/preview")  # type: ignore[attr-defined]
    assert "seed@example.com" in page.text
    sent = client.post("/desk/issues/1/test-send",  # type: ignore[attr-defined]
                       data={"csrf_token": csrf_from(page)})
    assert sent.status_code == 303 and sent.headers["location"] == "/desk/issues/1/preview?sent=2"
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["editor@example.com", "seed@example.com"]
    with seeded.sessions() as db:
        issue = editing.find_issue(db, 1)
        subject = issue.subject
        assert db.scalar(select(func.count()).select_from(Delivery)) == 0
        assert db.scalar(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.action == "issue.test_send")) == 1
    for mail in smtp.messages:
        assert str(mail.message["Subject"]) == f"[آزمایشی] {subject}"
        text, body = decoded_parts(mail.message)
        assert "sample-link-for-preview" in body and "%%CHAPAR" not in body + text
        # The MIME library ends a part with a newline; the rest is the preview byte for byte.
        preview = editing.preview_email(issue, seeded.settings.public_url).html
        assert body.replace("\r\n", "\n").rstrip("\n") == preview.rstrip("\n")


def test_the_preview_is_a_readers_message_but_for_the_personal_links(seeded: Runtime) -> None:
    client = signed_in(seeded)
    page = client.get("/desk/issues/1/preview")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "frame-src 'self'" in page.headers["content-security-policy"]
    assert 'width="375"' in page.text and 'width="600"' in page.text
    framed = client.get("/desk/issues/1/preview/email")  # type: ignore[attr-defined]
    assert "frame-ancestors 'self'" in framed.headers["content-security-policy"]
    assert "script-src" not in framed.headers["content-security-policy"]
    s = seeded.settings
    with seeded.sessions() as db:
        issue = editing.find_issue(db, 1)
        assert issue.preheader in page.text and issue.subject in page.text
        preview = editing.preview_email(issue, s.public_url)
        message = IssueMessage(
            issue_number=issue.number, subject=issue.subject, html=issue.html, text=issue.text,
            from_name=s.from_name, from_address=s.from_address, list_name=s.list_name,
            list_id=s.list_id, public_url=s.public_url, verp_domain=s.verp_domain,
            tokens=seeded.tokens, secret=instance_key(db, MESSAGE_ID).hex())
    reader = Recipient(delivery_id=7, subscriber_id=42, email="reader@example.com", domain="example.com")
    raw = message.render(reader, datetime(2026, 11, 27, tzinfo=UTC))
    text, html = decoded_parts(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
    for marker, real in message.links(42).items():
        sample = sample_personal_links(s.public_url)[marker]
        assert real in html
        html, text = html.replace(real, sample), text.replace(real, sample)
    assert framed.content == html.encode("utf-8")
    assert text == preview.text and html == preview.html
