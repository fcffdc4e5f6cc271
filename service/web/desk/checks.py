"""The pre-send checks of one issue on the desk: the report, a fresh run, an admin's override.

GET answers a fragment for htmx (the issue page loads it into its checks panel) and a
whole page otherwise. Every action is a call into service.digests.checks.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import checks
from service.digests.models import Issue
from service.digests.rendered_checks import GMAIL_CLIP_BYTES
from service.staff.audit import Actor
from service.staff.permissions import Permission
from service.web.desk.access import client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

NOTICES = {
    "run": "بررسی دوباره انجام شد؛ پیوندها در پس‌زمینه بررسی می‌شوند.",
    "override": "مانع‌ها با مسئولیت مدیر نادیده گرفته شد و در گزارش رویدادها ثبت شد.",
}
SEVERITY_LABELS = {"blocker": "مانع ارسال", "warning": "هشدار", "note": "یادداشت"}


def issue_by_number(session: Session, number: int) -> Issue:
    issue = session.scalars(select(Issue).where(Issue.number == number)).one_or_none()
    if issue is None:
        raise HTTPException(404, "no such issue")
    return issue


@router.get("/desk/issues/{number}/checks")
def show(request: Request, number: int, done: str = "") -> Response:
    rt, viewer = runtime(request), current_viewer(request)
    with rt.sessions() as session:
        report = checks.run_checks(rt, session, issue_by_number(session, number), utcnow(),
                                   fetch_links=False)
    fragment = bool(request.headers.get("hx-request"))
    return desk_page(request, "issue_checks.html", viewer, report=report, number=number,
                     fragment=fragment, notice=NOTICES.get(done), labels=SEVERITY_LABELS,
                     blockers=checks.blockers(report), limit_kb=GMAIL_CLIP_BYTES // 1024,
                     may_run=viewer.may(Permission.ISSUES_PREPARE),
                     may_override=viewer.may(Permission.STAFF_MANAGE))


@router.post("/desk/issues/{number}/checks/run")
def run(request: Request, number: int) -> Response:
    rt = runtime(request)
    with rt.sessions() as session:
        issue_id = issue_by_number(session, number).id
    checks.start_link_checks(rt, issue_id, utcnow())
    return back_to(f"/desk/issues/{number}/checks?done=run")


@router.post("/desk/issues/{number}/checks/override")
def override(request: Request, number: int, reason: str = Form("")) -> Response:
    rt, viewer = runtime(request), current_viewer(request)
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        issue = issue_by_number(session, number)
        report = checks.run_checks(rt, session, issue, now, fetch_links=False)
        if report.blocked:
            checks.override(session, issue, report,
                            Actor(viewer.account_id, viewer.email, client_address(request)), now,
                            reason)
    return back_to(f"/desk/issues/{number}/checks?done=override")
