"""The checks panel of an issue: the report, a fresh run, an admin's override; CSRF on each post."""

from __future__ import annotations

from sqlalchemy import select

from service.db import unit_of_work
from service.digests.models import LinkCheck
from service.runtime import Runtime
from service.staff.models import AuditEntry
from tests.delivery.factories import make_issue
from tests.staff.factories import staff_account
from tests.web.desk.support import csrf_from, desk_client, sign_in


def signed_in(rt: Runtime, role: str) -> object:
    with unit_of_work(rt.sessions) as db:
        staff_account(db, f"{role}@example.com", role)
    client = desk_client(rt)
    assert sign_in(client, f"{role}@example.com").status_code == 303
    return client


def test_the_panel_is_a_fragment_for_htmx_and_a_page_on_its_own(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as db:
        make_issue(db, number=7).subject = ""
    client = signed_in(runtime, "viewer")
    page = client.get("/desk/issues/7/checks")  # type: ignore[attr-defined]
    assert page.status_code == 200 and page.text.lstrip().startswith("<!DOCTYPE html>")
    assert "ارسال متوقف است: ۱ مانع باید برطرف شود." in page.text
    assert "موضوع نامه خالی است" in page.text
    assert "/checks/run" not in page.text and "/checks/override" not in page.text  # a viewer reads
    fragment = client.get("/desk/issues/7/checks", headers={"HX-Request": "true"})  # type: ignore[attr-defined]
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'id="checks"' in fragment.text and "موضوع نامه خالی است" in fragment.text
    assert client.get("/desk/issues/99/checks").status_code == 404  # type: ignore[attr-defined]


def test_a_fresh_run_needs_the_csrf_token_and_queues_the_links(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as db:
        issue = make_issue(db, number=8)
        url = issue.articles[0].url
        issue.html = issue.html.replace("</h1>", f'</h1><a href="{url}">خبر</a>')
    client = signed_in(runtime, "editor")
    page = client.get("/desk/issues/8/checks")  # type: ignore[attr-defined]
    assert "/checks/override" not in page.text  # only admins override
    refused = client.post("/desk/issues/8/checks/run", data={"csrf_token": "wrong"})  # type: ignore[attr-defined]
    assert refused.status_code == 403 and "نشانهٔ امنیتی" in refused.text
    with runtime.sessions() as db:
        assert db.scalars(select(LinkCheck)).all() == []
    ran = client.post("/desk/issues/8/checks/run", data={"csrf_token": csrf_from(page)})  # type: ignore[attr-defined]
    assert ran.status_code == 303 and ran.headers["location"] == "/desk/issues/8/checks?done=run"
    with runtime.sessions() as db:
        rows = db.scalars(select(LinkCheck)).all()
        assert [(r.url, r.state) for r in rows] == [(url, "pending")]


def test_an_admin_overrides_the_blockers_and_it_is_audited(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as db:
        make_issue(db, number=9).subject = ""
    client = signed_in(runtime, "admin")
    page = client.get("/desk/issues/9/checks")  # type: ignore[attr-defined]
    assert "ارسال با وجود مانع‌ها مجاز شود" in page.text
    missing = client.post("/desk/issues/9/checks/override", data={"reason": "x"})  # type: ignore[attr-defined]
    assert missing.status_code == 403
    done = client.post("/desk/issues/9/checks/override", data={  # type: ignore[attr-defined]
        "csrf_token": csrf_from(page), "reason": "موضوع را سردبیر تأیید کرد"})
    assert done.status_code == 303
    after = client.get(done.headers["location"])  # type: ignore[attr-defined]
    assert "مانع‌ها را" in after.text and "admin@example.com" in after.text
    assert "ارسال متوقف است" not in after.text
    with runtime.sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "issue.checks_override")).one()
        assert entry.actor == "admin@example.com" and entry.target == "issue:9"
        assert "subject.missing" in entry.detail and "سردبیر" in entry.detail
