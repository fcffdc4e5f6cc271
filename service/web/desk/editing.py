"""One issue on the desk: its articles and text (issues.prepare), its preview and test send.

Each route is a call to service/digests/editing.py, the same functions the
`chapar digest ...` commands call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery.outbox import NotSent
from service.digests import editing
from service.digests.editing import EditRefused, NoSuchIssue
from service.digests.models import Issue
from service.persian import persian_digits
from service.settings import Settings
from service.staff.audit import Actor
from service.staff.permissions import Permission
from service.web.desk.access import Viewer, client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page
from service.web.layers import content_security_policy

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

NOTICES = {
    "moved": "ترتیب خبرها ذخیره شد.",
    "lead": "خبر اصلی ذخیره شد.",
    "excluded": "خبر از این شماره کنار گذاشته شد.",
    "pinned": "سنجاق ذخیره شد.",
    "grouping": "دسته‌بندی بر پایهٔ بخش ذخیره شد.",
    "text": "عنوان، پیش‌نمایش و مقدمه ذخیره شد.",
    "added": "خبر به پایان این شماره افزوده شد.",
    "rebuilt": "پیش‌نویس دوباره ساخته شد.",
    "unchanged": "چیزی تغییر نکرد.",
}
PREVIEW_WIDTHS = (375, 600)
# The email in the preview frame: its own inline styles and remote images, never a script,
# a form or a navigation of the desk page; only the desk itself may frame it.
EMAIL_FRAME_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
                      "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
                      "sandbox allow-popups allow-popups-to-escape-sandbox")

Change = Callable[[Session, Settings, Issue, Actor], str]


def actor_of(request: Request) -> Actor:
    viewer = current_viewer(request)
    return Actor(viewer.account_id, viewer.email, client_address(request))


def issue_page(request: Request, number: int, *, notice: str = "", error: str | None = None,
               status_code: int = 200, add_url: str = "") -> Response:
    viewer = current_viewer(request)
    with runtime(request).sessions() as db:
        try:
            issue = editing.find_issue(db, number)
        except NoSuchIssue as exc:
            return desk_page(request, "error.html", viewer, status_code=404,
                             heading="پیدا نشد", message=exc.persian)
        return desk_page(request, "issue.html", viewer, status_code=status_code, issue=issue,
                         items=editing.ordered_items(issue),
                         pinned=editing.pinned_article_ids(db, issue),
                         editable=editing.is_editable(issue),
                         may_edit=viewer.may(Permission.ISSUES_PREPARE),
                         notice=NOTICES.get(notice), error=error, add_url=add_url,
                         fa=persian_digits)


def apply(request: Request, number: int, change: Change) -> Response:
    """Run one change in one transaction; back to the issue page with its notice or the reason."""
    rt = runtime(request)
    try:
        with unit_of_work(rt.sessions) as db:
            done = change(db, rt.settings, editing.find_issue(db, number), actor_of(request))
    except NoSuchIssue:
        return issue_page(request, number)
    except EditRefused as exc:
        return issue_page(request, number, error=exc.persian, status_code=422)
    return back_to(f"/desk/issues/{number}?done={done}")


@router.get("/desk/issues/{number}")
def show(request: Request, number: int, done: str = "") -> Response:
    return issue_page(request, number, notice=done)


@router.post("/desk/issues/{number}/articles/{item_id}/move")
def move(request: Request, number: int, item_id: int,
         direction: Literal["up", "down"] = Form(...)) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        editing.move(db, settings, issue, item_id, direction, actor, utcnow())
        return "moved"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/articles/{item_id}/exclude")
def exclude(request: Request, number: int, item_id: int) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        editing.exclude(db, settings, issue, item_id, actor, utcnow())
        return "excluded"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/articles/{item_id}/pin")
def pin(request: Request, number: int, item_id: int, pinned: bool = Form(...)) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        editing.pin(db, settings, issue, item_id, pinned, actor, utcnow())
        return "pinned"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/lead")
def lead(request: Request, number: int, item: str = Form("")) -> Response:
    """The lead story: the article `item` (its id), or none when `item` is empty."""
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        chosen = int(item) if item.isdigit() else None
        editing.set_lead(db, settings, issue, chosen, actor, utcnow())
        return "lead"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/grouping")
def grouping(request: Request, number: int, grouped: bool = Form(False)) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        editing.set_grouping(db, settings, issue, grouped, actor, utcnow())
        return "grouping"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/text")
def text(request: Request, number: int, subject: str = Form(""), preheader: str = Form(""),
         intro: str = Form("")) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        changed = editing.edit_text(db, settings, issue, actor, utcnow(), subject=subject,
                                    preheader=preheader, intro=intro)
        return "text" if changed else "unchanged"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/rebuild")
def rebuild(request: Request, number: int) -> Response:
    def change(db: Session, settings: Settings, issue: Issue, actor: Actor) -> str:
        editing.rebuild(db, settings, issue, actor, utcnow())
        return "rebuilt"
    return apply(request, number, change)


@router.post("/desk/issues/{number}/add")
def add(request: Request, number: int, url: str = Form("")) -> Response:
    try:
        editing.add_by_url(runtime(request), number, url, actor_of(request), utcnow())
    except NoSuchIssue:
        return issue_page(request, number)
    except EditRefused as exc:
        return issue_page(request, number, error=exc.persian, status_code=422, add_url=url)
    return back_to(f"/desk/issues/{number}?done=added")


def preview_page(request: Request, number: int, *, notice: str | None = None,
                 error: str | None = None, status_code: int = 200) -> Response:
    viewer: Viewer = current_viewer(request)
    rt = runtime(request)
    with rt.sessions() as db:
        try:
            issue = editing.find_issue(db, number)
        except NoSuchIssue as exc:
            return desk_page(request, "error.html", viewer, status_code=404,
                             heading="پیدا نشد", message=exc.persian)
        email = editing.preview_email(issue, rt.settings.public_url)
        response = desk_page(request, "issue_preview.html", viewer, status_code=status_code,
                             issue=issue, email=email, widths=PREVIEW_WIDTHS,
                             recipients=editing.recipients_of_test(rt.settings, viewer.email),
                             from_name=rt.settings.from_name, notice=notice, error=error,
                             fa=persian_digits)
    # The page frames its own email preview, which the desk's policy would forbid.
    response.headers["Content-Security-Policy"] = (
        content_security_policy(rt.settings.public_url) + "; frame-src 'self'")
    return response


@router.get("/desk/issues/{number}/preview")
def preview(request: Request, number: int, sent: int = 0) -> Response:
    notice = f"نسخهٔ آزمایشی به {persian_digits(sent)} نشانی فرستاده شد." if sent else None
    return preview_page(request, number, notice=notice)


@router.get("/desk/issues/{number}/preview/email")
def preview_email(request: Request, number: int) -> Response:
    """The HTML a reader gets, personal links replaced by sample ones; shown in a frame."""
    rt = runtime(request)
    with rt.sessions() as db:
        try:
            issue = editing.find_issue(db, number)
        except NoSuchIssue:
            return HTMLResponse("", status_code=404)
        html = editing.preview_email(issue, rt.settings.public_url).html
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_FRAME_POLICY,
                                       "Cache-Control": "no-store"})


@router.post("/desk/issues/{number}/test-send")
def test_send(request: Request, number: int) -> Response:
    viewer, rt = current_viewer(request), runtime(request)
    try:
        recipients = editing.recipients_of_test(rt.settings, viewer.email)
        results = editing.send_test(rt, number, recipients, actor_of(request), utcnow())
    except NoSuchIssue:
        return preview_page(request, number)
    except EditRefused as exc:
        return preview_page(request, number, error=exc.persian, status_code=422)
    except NotSent as exc:
        log.warning("test send of issue %s failed: %s", number, exc)
        return preview_page(request, number, status_code=503,
                            error="ارسال ممکن نشد: سرور ایمیل در دسترس نیست. کمی بعد دوباره تلاش کنید.")
    refused = [to for to, result in results if result.kind != "sent"]
    if refused:
        return preview_page(request, number, status_code=502,
                            error="این نشانی‌ها نسخهٔ آزمایشی را نپذیرفتند: " + "، ".join(refused))
    return back_to(f"/desk/issues/{number}/preview?sent={len(results)}")
