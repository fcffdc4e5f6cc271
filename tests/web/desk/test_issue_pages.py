"""The issue list, the review panel and the schedule page, driven over HTTP with real sessions."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from service.db import unit_of_work
from service.digests import review
from service.digests.models import IssueStatus, ScheduleSlot, WeeklySchedule
from service.runtime import Runtime
from tests.delivery.factories import make_issue
from tests.staff.factories import staff_account
from tests.web.desk.support import csrf_from, desk_client, sign_in

BLOCKER = "پیام از حد بریده شدن Gmail بزرگ‌تر است | larger than Gmail's clipping limit"


def status_of(rt: Runtime, number: int) -> IssueStatus:
    with rt.sessions() as session:
        return review.find(session, number).status


@pytest.fixture
def people(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setattr(review, "run_checks_hook", lambda rt, session, issue: [])
    with unit_of_work(runtime.sessions) as session:
        for role in ("editor", "chief-editor", "admin"):
            staff_account(session, f"{role}@example.com", role)
        make_issue(session, 3)
    return runtime


def test_an_editor_asks_for_review_and_a_chief_editor_approves(people: Runtime) -> None:
    editor = desk_client(people)
    sign_in(editor, "editor@example.com")
    page = editor.get("/desk/issues/3/review")
    assert "درخواست بازبینی" in page.text and "تأیید</button>" not in page.text
    done = editor.post("/desk/issues/3/review/request", data={"csrf_token": csrf_from(page)})
    assert done.status_code == 303 and status_of(people, 3) is IssueStatus.IN_REVIEW
    chief = desk_client(people)
    sign_in(chief, "chief-editor@example.com")
    token = csrf_from(chief.get("/desk/issues/3/review"))
    fragment = chief.post("/desk/issues/3/review/approve",
                          headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "شماره تأیید شد" in fragment.text and "ارسال همین حالا" in fragment.text
    assert status_of(people, 3) is IssueStatus.APPROVED
    listing = chief.get("/desk/issues").text
    assert "تأییدشده" in listing and re.search("[۰-۹]{4}", listing)  # a Jalali year


def test_a_move_without_the_csrf_token_is_refused_and_changes_nothing(people: Runtime) -> None:
    chief = desk_client(people)
    sign_in(chief, "chief-editor@example.com")
    refused = chief.post("/desk/issues/3/review/request", data={"csrf_token": "forged"})
    assert refused.status_code == 403 and "نشانهٔ امنیتی" in refused.text
    assert chief.post("/desk/issues/3/review/request").status_code == 403
    assert status_of(people, 3) is IssueStatus.DRAFT


def test_a_blocker_is_shown_in_persian_and_only_an_admin_overrides_it(
        people: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "run_checks_hook", lambda rt, session, issue: [BLOCKER])
    editor = desk_client(people)
    sign_in(editor, "editor@example.com")
    token = csrf_from(editor.get("/desk/issues/3/review"))
    refused = editor.post("/desk/issues/3/review/request", data={"csrf_token": token})
    assert refused.status_code == 409 and "Gmail" in refused.text and "بررسی پیش از ارسال" in refused.text
    overriding = editor.post("/desk/issues/3/review/request", data={"csrf_token": token, "override": "on"})
    assert overriding.status_code == 409 and "فقط مدیر" in overriding.text
    assert status_of(people, 3) is IssueStatus.DRAFT
    admin = desk_client(people)
    sign_in(admin, "admin@example.com")
    token = csrf_from(admin.get("/desk/issues/3/review"))
    assert admin.post("/desk/issues/3/review/request",
                      data={"csrf_token": token, "override": "on"}).status_code == 303
    page = admin.get("/desk/issues/3/review").text
    assert status_of(people, 3) is IssueStatus.IN_REVIEW and "گذشتن از مانع بررسی‌ها" in page


def test_sending_back_shows_the_comment_in_the_history(people: Runtime) -> None:
    with unit_of_work(people.sessions) as session:
        review.find(session, 3).status = IssueStatus.IN_REVIEW
    chief = desk_client(people)
    sign_in(chief, "chief-editor@example.com")
    token = csrf_from(chief.get("/desk/issues/3/review"))
    empty = chief.post("/desk/issues/3/review/send-back", data={"csrf_token": token, "comment": " "})
    assert empty.status_code == 409 and status_of(people, 3) is IssueStatus.IN_REVIEW
    chief.post("/desk/issues/3/review/send-back",
               data={"csrf_token": token, "comment": "خلاصهٔ خبر دوم کوتاه شود"})
    assert status_of(people, 3) is IssueStatus.DRAFT
    assert "خلاصهٔ خبر دوم کوتاه شود" in chief.get("/desk/issues/3/review").text


def test_the_schedule_page_moves_the_slot_and_skips_a_week(people: Runtime) -> None:
    admin = desk_client(people)
    sign_in(admin, "admin@example.com")
    page = admin.get("/desk/schedule")
    assert page.status_code == 200 and page.text.count("رد کردن این هفته") == 5
    token = csrf_from(page)
    assert admin.post("/desk/schedule", data={"csrf_token": token, "weekday": "3",
                                              "time": "20:30"}).status_code == 303
    with people.sessions() as session:
        row = session.get(WeeklySchedule, 1)
        assert row is not None and (row.weekday, row.hour, row.minute) == (3, 20, 30)
    page = admin.get("/desk/schedule")
    assert "پنجشنبه، ساعت ۲۰:۳۰" in page.text
    editor = desk_client(people)
    sign_in(editor, "editor@example.com")
    page = editor.get("/desk/schedule")
    assert "تغییر نوبت هفتگی" not in page.text
    slot = re.search(r'name="slot" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert editor.post("/desk/schedule/skip", data={"csrf_token": csrf_from(page),
                                                    "slot": slot}).status_code == 303
    with people.sessions() as session:
        assert session.scalars(select(ScheduleSlot.outcome)).one() == "skipped"
    assert "رد شده" in editor.get("/desk/schedule").text


def test_a_move_on_an_issue_that_does_not_exist_is_not_found(people: Runtime) -> None:
    admin = desk_client(people)
    sign_in(admin, "admin@example.com")
    token = csrf_from(admin.get("/desk/issues/3/review"))
    for move in ("request", "approve", "send-back", "schedule"):
        missing = admin.post(f"/desk/issues/999/review/{move}", data={"csrf_token": token})
        assert missing.status_code == 404 and "شماره پیدا نشد" in missing.text, move
