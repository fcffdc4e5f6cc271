"""Readers on the desk: search the list, read one reader's record, act on it, export the list.

The search and the export read service.subscribers.search (as `chapar subscribers
export` does); each action is a function of service.subscribers.actions, audited
there, the same the CLI calls. Outcomes travel as fixed keys in the redirect, so a
crafted link cannot put words on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response, StreamingResponse

from service.clock import utcnow
from service.delivery.models import DeliveryStatus
from service.persian import jalali_date, persian_digits
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.permissions import Permission
from service.subscribers import actions, search
from service.subscribers.history import reader_history
from service.subscribers.models import Status
from service.subscribers.search import Cursor, FilterError, ReaderFilter
from service.subscribers.store import confirmation_interval
from service.web.desk.access import client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)
ReaderId = Annotated[int, Path()]  # the path says {subscriber_id:int}: /desk/readers/import is not a reader
Typed = Annotated[str, Form()]

STATUS_LABELS = {
    Status.PENDING: "در انتظار تأیید",
    Status.CONFIRMED: "عضو",
    Status.UNSUBSCRIBED: "لغو عضویت",
    Status.BOUNCED: "برگشتی",
    Status.COMPLAINED: "گزارش هرزنامه",
}
EVENT_LABELS = {
    "subscribe": "درخواست عضویت",
    "import": "درون‌ریزی",
    "confirm": "تأیید",
    "unsubscribe": "لغو عضویت",
    "resubscribe_requested": "درخواست دوباره پس از خروج",
    "resubscribe": "عضویت دوباره",
    "bounce": "برگشت ایمیل",
    "complaint": "گزارش هرزنامه",
    "recorded": "رضایت ثبت‌شده پیش از این تاریخچه",
}
DELIVERY_LABELS = {
    DeliveryStatus.QUEUED: "در صف",
    DeliveryStatus.SENDING: "در حال ارسال",
    DeliveryStatus.SENT: "فرستاده شد",
    DeliveryStatus.DEFERRED: "به تعویق افتاد",
    DeliveryStatus.FAILED: "ناموفق",
    DeliveryStatus.UNCERTAIN: "نامعلوم",
    DeliveryStatus.CANCELLED: "لغو شد",
}
BOUNCE_LABELS = {"hard": "برگشت دائمی", "soft": "برگشت موقت", "unknown": "برگشت نامعلوم"}
DONE = {
    "unsubscribed": "عضویت این خواننده لغو شد.",
    "resent": "ایمیل تأیید دوباره در صف فرستادن است.",
    "erased": "خواننده و همهٔ سابقه‌اش پاک شد؛ تنها اثر رمزنگاشتهٔ نشانی ماند تا درون‌ریزی آن را برنگرداند.",
}
REFUSED = {
    "unchanged": "این خواننده پیش‌تر از فهرست بیرون رفته است (لغو عضویت، برگشتی یا شکایت).",
    "not-pending": "ایمیل تأیید فقط برای عضویتی فرستاده می‌شود که در انتظار تأیید است.",
    "too-soon": "برای این نشانی در یک روز گذشته ایمیل تأیید خواسته شده است؛ هر نشانی در روز "
                "بیش از یک ایمیل تأیید نمی‌گیرد، چه از فرم عضویت و چه از میز.",
}
FILTER_FIELDS = ("address", "status", "source", "joined_from", "joined_to")
EXPORT_CHUNK = 64 * 1024


def fa_count(value: int) -> str:
    """A count in Persian digits with the Persian thousands separator: ۱۲٬۳۴۵."""
    return persian_digits(f"{value:,}").replace(",", "٬")


def actor(request: Request) -> Actor:
    viewer = current_viewer(request)
    return Actor(viewer.account_id, viewer.email, client_address(request))


def day_of(rt: Runtime) -> Callable[[datetime | None], str]:
    tz = rt.settings.tz
    return lambda moment: jalali_date(moment, tz, weekday=False) if moment else ""


def typed_filter(request: Request, source: dict[str, str]) -> tuple[dict[str, str], ReaderFilter | None,
                                                                    FilterError | None]:
    """What was typed, the filter it makes, or why it makes none."""
    typed = {name: source.get(name, "").strip()[:200] for name in FILTER_FIELDS}
    try:
        return typed, ReaderFilter.from_text(runtime(request).settings.tz, **typed), None
    except FilterError as exc:
        return typed, None, exc


def list_page(request: Request, typed: dict[str, str], chosen: ReaderFilter | None,
              problem: FilterError | None, *, older: str = "", newer: str = "", notice: str = "",
              status_code: int = 200) -> Response:
    rt, viewer = runtime(request), current_viewer(request)
    query = {k: v for k, v in typed.items() if v}
    context: dict[str, Any] = dict(typed=typed, problem=problem, notice=notice,
                                   statuses=STATUS_LABELS, day=day_of(rt), fa_count=fa_count,
                                   may_manage=viewer.may(Permission.SUBSCRIBERS_MANAGE),
                                   shortest=search.SHORTEST_PART, page=None, matches=None)
    with rt.sessions() as session:
        context["sources"] = search.sources(session)
        if chosen is not None:
            page, matches = search.search_and_count(session, chosen, older_than=Cursor.read(older),
                                                    newer_than=Cursor.read(newer))
            context.update(
                page=page, matches=matches,
                first_url=link(query), older_url=link(query, older=page.older),
                newer_url=link(query, newer=page.newer),
                rows=[(r.id, r.email, r.status, r.consent_source, r.created_at) for r in page.readers])
    return desk_page(request, "readers.html", viewer, status_code=status_code, **context)


def link(query: dict[str, str], *, older: Cursor | None = None, newer: Cursor | None = None) -> str:
    if older is not None:
        query = {**query, "older": older.token()}
    if newer is not None:
        query = {**query, "newer": newer.token()}
    return "/desk/readers" + ("?" + urlencode(query) if query else "")


@router.get("/desk/readers")
def readers(request: Request, older: str = "", newer: str = "", done: str = "") -> Response:
    typed, chosen, problem = typed_filter(request, dict(request.query_params))
    # htmx swaps in only what a 2xx brings: the filter's problem is then shown as a page.
    refused = problem is not None and not request.headers.get("hx-request")
    return list_page(request, typed, chosen, problem, older=older, newer=newer,
                     notice=DONE.get(done, ""), status_code=422 if refused else 200)


@router.post("/desk/readers/export")
def export(request: Request, address: Typed = "", status: Typed = "", source: Typed = "",
           joined_from: Typed = "", joined_to: Typed = "") -> Response:
    """The list as CSV with the page's filters: streamed in batches, audited before it starts."""
    typed, chosen, problem = typed_filter(request, dict(
        address=address, status=status, source=source, joined_from=joined_from, joined_to=joined_to))
    if chosen is None:
        return list_page(request, typed, chosen, problem, status_code=422)
    rt = runtime(request)
    actions.record_export(rt, actor(request), chosen, utcnow())
    stamp = utcnow().astimezone(rt.settings.tz).strftime("%Y%m%d-%H%M")

    def body() -> Iterator[str]:
        chunk = ["\ufeff"]  # so a spreadsheet reads the file as UTF-8 (Persian sources)
        size = 0
        for line in search.csv_lines(search.matching(rt.sessions, chosen)):
            chunk.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK:  # one write to the client per chunk, not per reader
                yield "".join(chunk)
                chunk, size = [], 0
        yield "".join(chunk)

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="chapar-readers-{stamp}.csv"',
        "Cache-Control": "no-store"})


def reader_page(request: Request, subscriber_id: int, *, done: str = "", refused: str = "",
                status_code: int = 200) -> Response:
    rt, viewer, now = runtime(request), current_viewer(request), utcnow()
    interval = confirmation_interval(rt.settings.confirm_emails_per_address_per_day)
    with rt.sessions() as session:
        record = reader_history(session, subscriber_id, interval)
        if record is None:
            return missing(request)
        return desk_page(
            request, "reader.html", viewer, status_code=status_code, r=record, s=record.subscriber,
            now=now, statuses=STATUS_LABELS, events=EVENT_LABELS, outcomes=DELIVERY_LABELS,
            bounce_labels=BOUNCE_LABELS, notice=DONE.get(done, ""), refusal=REFUSED.get(refused, ""),
            may_manage=viewer.may(Permission.SUBSCRIBERS_MANAGE), fa_count=fa_count,
            wait_until=record.confirmation_due_at if record.confirmation_due_at
            and record.confirmation_due_at > now else None)


def missing(request: Request) -> Response:
    return desk_page(request, "error.html", current_viewer(request), status_code=404,
                     heading="خواننده پیدا نشد",
                     message="خواننده‌ای با این شماره نیست: پاک شده یا هرگز عضو نبوده است.")


@router.get("/desk/readers/{subscriber_id:int}")
def reader(request: Request, subscriber_id: ReaderId, done: str = "", refused: str = "") -> Response:
    return reader_page(request, subscriber_id, done=done, refused=refused)


def act(request: Request, subscriber_id: int, done: str,
        action: Callable[[Runtime, Actor, int, datetime], actions.Done]) -> Response:
    try:
        action(runtime(request), actor(request), subscriber_id, utcnow())
    except actions.ActionRefused as exc:
        if exc.reason == "missing":
            return missing(request)
        return back_to(f"/desk/readers/{subscriber_id}?refused={exc.reason}")
    return back_to(f"/desk/readers/{subscriber_id}?done={done}")


@router.post("/desk/readers/{subscriber_id:int}/unsubscribe")
def unsubscribe(request: Request, subscriber_id: ReaderId) -> Response:
    return act(request, subscriber_id, "unsubscribed", actions.unsubscribe)


@router.post("/desk/readers/{subscriber_id:int}/resend-confirmation")
def resend_confirmation(request: Request, subscriber_id: ReaderId) -> Response:
    return act(request, subscriber_id, "resent", actions.resend_confirmation)


def erase_page(request: Request, subscriber_id: int, *, error: str = "", status_code: int = 200
               ) -> Response:
    rt = runtime(request)
    with rt.sessions() as session:
        record = reader_history(session, subscriber_id, confirmation_interval(1))
        if record is None:
            return missing(request)
        return desk_page(request, "reader_erase.html", current_viewer(request), status_code=status_code,
                         s=record.subscriber, r=record, error=error, fa_count=fa_count)


@router.get("/desk/readers/{subscriber_id:int}/erase")
def erase_confirm(request: Request, subscriber_id: ReaderId) -> Response:
    return erase_page(request, subscriber_id)


@router.post("/desk/readers/{subscriber_id:int}/erase")
def erase(request: Request, subscriber_id: ReaderId, confirm: Annotated[str, Form()] = "") -> Response:
    if confirm != "yes":
        return erase_page(request, subscriber_id, status_code=422,
                          error="برای پاک کردن، گزینهٔ تأیید را علامت بزنید.")
    try:
        actions.erase(runtime(request), actor(request), subscriber_id, utcnow())
    except actions.ActionRefused:
        return missing(request)
    return back_to("/desk/readers?done=erased")
