"""The issue list and the review panel: state, history, and the moves the viewer may make.

Each POST calls one function of service/digests/review.py, the same the CLI calls.
An htmx request gets the panel back; a plain form post is redirected to the panel page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import review, weekly
from service.digests.models import Issue
from service.staff.audit import Actor
from service.staff.permissions import NotPermitted, Who
from service.web.desk.access import Viewer, client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

ACTIONS = {
    "issue.request_review": "درخواست بازبینی",
    "issue.approve": "تأیید",
    "issue.send_back": "برگرداندن به ویراستار",
    "issue.schedule": "زمان‌بندی",
    "issue.unschedule": "لغو زمان‌بندی",
    "issue.send": "آغاز ارسال",
    "issue.edit": "ویرایش",
    "issue.back_to_draft": "بازگشت به پیش‌نویس پس از ویرایش",
    "issue.checks_override": "گذشتن از مانع بررسی‌ها",
}
DONE = {
    "request": "درخواست بازبینی ثبت شد.",
    "approve": "شماره تأیید شد.",
    "send-back": "شماره با توضیح شما به ویراستار برگشت.",
    "schedule": "شماره زمان‌بندی شد.",
    "send-now": "ارسال آغاز شد.",
}


def who_of(request: Request, viewer: Viewer) -> Who:
    return Who(Actor(viewer.account_id, viewer.email, client_address(request)), viewer.role)


@router.get("/desk/issues")
def issue_list(request: Request) -> Response:
    rt, now = runtime(request), utcnow()
    with rt.sessions() as db:
        issues = list(db.scalars(select(Issue).order_by(Issue.number.desc()).limit(100)))
        slot = weekly.current(db, rt.settings)
        coming = weekly.coming_slots(slot, now)
        rows = weekly.slot_rows(db, coming)
        return desk_page(request, "issues.html", current_viewer(request), labels=review.LABELS,
                         upcoming=[i for i in issues if i.status in review.UNSENT],
                         past=[i for i in issues if i.status not in review.UNSENT],
                         slots=[(at, rows.get(at)) for at in coming])


def panel(request: Request, number: int, *, error: str = "", notice: str = "",
          status_code: int = 200) -> Response:
    viewer = current_viewer(request)
    with runtime(request).sessions() as db:
        issue = review.find(db, number)
        context = dict(issue=issue, labels=review.LABELS, history=review.history(db, issue),
                       action_labels=ACTIONS, moves=review.actions_for(issue, who_of(request, viewer)),
                       error=error, notice=notice)
        fragment = bool(request.headers.get("hx-request"))
        return desk_page(request, "review_panel.html" if fragment else "review.html", viewer,
                         status_code=status_code, **context)


@router.get("/desk/issues/{number}/review")
def review_panel(request: Request, number: int, done: str = "") -> Response:
    try:
        return panel(request, number, notice=DONE.get(done, ""))
    except review.ReviewError as exc:
        return no_such_issue(request, exc)


def no_such_issue(request: Request, exc: review.ReviewError) -> Response:
    return desk_page(request, "error.html", current_viewer(request), status_code=404,
                     heading="شماره پیدا نشد", message=exc.persian)


def act(request: Request, number: int, name: str,
        move: Callable[[Session, Issue, Who, datetime], object]) -> Response:
    """Make one move in one transaction; a refusal is shown on the panel with its reason."""
    viewer = current_viewer(request)
    try:
        with unit_of_work(runtime(request).sessions) as db:
            move(db, review.find(db, number), who_of(request, viewer), utcnow())
    except (review.ReviewError, NotPermitted) as exc:
        return refused(request, number, exc)
    return done(request, number, name)


def refused(request: Request, number: int, exc: review.ReviewError | NotPermitted) -> Response:
    reason = exc.persian if isinstance(exc, review.ReviewError) else str(exc).partition(" | ")[0]
    try:
        return panel(request, number, error=reason, status_code=409)
    except review.ReviewError as missing:  # the issue itself does not exist
        return no_such_issue(request, missing)


def done(request: Request, number: int, name: str) -> Response:
    if request.headers.get("hx-request"):
        return panel(request, number, notice=DONE[name])
    return back_to(f"/desk/issues/{number}/review?done={name}")


@router.post("/desk/issues/{number}/review/request")
def request_review(request: Request, number: int, override: str = Form("")) -> Response:
    checks = review.pre_send_checks(runtime(request))
    return act(request, number, "request", lambda db, issue, who, now: review.request_review(
        db, issue, who, now, checks, override=override == "on"))


@router.post("/desk/issues/{number}/review/approve")
def approve(request: Request, number: int) -> Response:
    return act(request, number, "approve", review.approve)


@router.post("/desk/issues/{number}/review/send-back")
def send_back(request: Request, number: int, comment: str = Form("")) -> Response:
    return act(request, number, "send-back",
               lambda db, issue, who, now: review.send_back(db, issue, who, now, comment))


@router.post("/desk/issues/{number}/review/schedule")
def schedule(request: Request, number: int, at: str = Form("")) -> Response:
    settings = runtime(request).settings
    try:
        when = datetime.fromisoformat(at).replace(tzinfo=settings.tz) if at else None
    except ValueError:
        return panel(request, number, error="زمان واردشده خوانا نیست.", status_code=422)
    return act(request, number, "schedule",
               lambda db, issue, who, now: review.schedule(db, settings, issue, who, now, when))


@router.post("/desk/issues/{number}/review/send-now")
def send_now(request: Request, number: int, override: str = Form("")) -> Response:
    viewer = current_viewer(request)
    try:
        review.send_now_and_ring(runtime(request), number, who_of(request, viewer), utcnow(),
                                 override=override == "on")
    except (review.ReviewError, NotPermitted) as exc:
        return refused(request, number, exc)
    return done(request, number, "send-now")
