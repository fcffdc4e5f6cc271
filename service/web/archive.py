"""/archive: the issues that went out, as web pages without anyone's personal links."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.digests.models import Issue, IssueStatus
from service.digests.render import without_personal_links
from service.persian import jalali_date, persian_digits
from service.runtime import Runtime
from service.web.pages import error, page

router = APIRouter()
QueryT = TypeVar("QueryT", bound=Select[Any])
PUBLISHED = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)
# Issue numbers are a 32-bit integer column; a number past it names no issue, and asking
# the database about it would fail (PostgreSQL and SQLite refuse such parameters).
ISSUE_NUMBERS = range(1, 2**31)


def published(query: QueryT) -> QueryT:
    """Issues a reader may have received: sending began; drafts never show."""
    return query.where(or_(Issue.status.in_(PUBLISHED),
                           (Issue.status == IssueStatus.CANCELLED) & Issue.send_started_at.is_not(None)))


def list_issues(session: Session) -> list[Issue]:
    return list(session.scalars(published(select(Issue)).order_by(Issue.number.desc()).limit(500)))


def find_issue(session: Session, number: int) -> Issue | None:
    query = published(select(Issue).where(Issue.number == number))
    return session.scalars(query).one_or_none()


@router.get("/archive")
async def archive_index(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime

    def load() -> list[dict[str, str]]:
        with rt.sessions() as session:
            return [{"number": persian_digits(i.number), "url": rt.url(f"/archive/{i.number}"),
                     "subject": i.subject, "date": jalali_date(i.window_end, rt.settings.tz)}
                    for i in list_issues(session)]

    issues = await run_in_threadpool(load)
    return page(request, "archive.html", issues=issues)


@router.get("/archive/{number}")
async def archive_issue(request: Request, number: int) -> Response:
    rt: Runtime = request.app.state.runtime
    if number not in ISSUE_NUMBERS:
        return error(request, 404)

    def load() -> str | None:
        with rt.sessions() as session:
            issue = find_issue(session, number)
            return issue.html if issue else None

    html = await run_in_threadpool(load)
    if html is None:
        return error(request, 404)
    subscribe = Markup('<p class="footer">این شماره‌ای از {name} است. '
                       '<a href="{url}">عضویت در خبرنامه</a> · <a href="{archive}">شماره‌های پیشین</a></p>'
                       ).format(name=escape(rt.settings.list_name), url=rt.url("/"),
                                archive=rt.url("/archive"))
    return HTMLResponse(without_personal_links(html, str(subscribe)),
                        headers={"Cache-Control": "public, max-age=300"})
