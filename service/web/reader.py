"""Reader pages: subscribe, confirm, unsubscribe (RFC 8058 one-click), preferences."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import results
from service.persian import jalali_date, single_line
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.addresses import AddressError, normalize_address
from service.subscribers.models import Status, Subscriber
from service.tokens import Purpose, TokenError
from service.web.layers import content_security_policy
from service.web.pages import error, page, wants_json

log = logging.getLogger(__name__)
router = APIRouter()

STATUS_LABELS = {
    Status.PENDING: "در انتظار تأیید",
    Status.CONFIRMED: "عضو",
    Status.UNSUBSCRIBED: "لغو عضویت کرده‌اید",
    Status.BOUNCED: "ایمیل‌ها به این نشانی نمی‌رسند",
    Status.COMPLAINED: "گزارش هرزنامه داده‌اید",
}
# What the preferences page tells a reader about click counting (CHAPAR_TRACK_CLICKS).
CLICK_NOTES = {
    "false": "کلیک شما روی پیوندهای خبرنامه شمرده نمی‌شود: پیوندها یکراست به خبرها می‌روند.",
    "true": ("پیوند خبرها از نشانی این خبرنامه می‌گذرد و تنها شمرده می‌شود هر خبر چند بار "
             "باز شده است؛ نام و نشانی شما همراه کلیک ثبت نمی‌شود."),
    "per-reader": ("پیوند خبرها از نشانی این خبرنامه می‌گذرد و کلیک شما روی هر خبر همراه با "
                   "عضویت‌تان ثبت می‌شود؛ اگر اطلاعاتتان را پاک کنید، کلیک‌ها تنها بی‌نام شمرده می‌مانند."),
}
OPENS_NOTE = "باز شدن نامه‌ها را نمی‌شماریم و هیچ تصویر ردیابی در نامه‌ها نیست."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
SUBSCRIBED_MESSAGE = "اگر این نشانی هنوز عضو نباشد، ایمیلی برای تأیید عضویت به آن فرستادیم."


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def read_fields(request: Request) -> dict[str, str] | Response:
    """Form or JSON body as plain strings, or the error response to send."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data: Any = await request.json()
        except (ValueError, RecursionError):
            # RecursionError: a few KB of "[[[[..." nests deeper than the decoder goes.
            return error(request, 400, "JSON نامعتبر است.", code="invalid_json")
        if not isinstance(data, dict):
            return error(request, 400, "JSON باید یک شیء باشد.", code="invalid_json")
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
    if ctype in FORM_TYPES:
        form = await request.form(max_files=0, max_fields=20)
        return {k: v for k, v in form.items() if isinstance(v, str)}
    if not ctype:
        return {}
    return error(request, 415, code="unsupported_media_type")


@router.get("/")
@router.get("/subscribe")
def subscribe_page(request: Request) -> Response:
    return page(request, "subscribe.html", action=runtime(request).url("/subscribe"),
                source="subscribe-page", email="", error=None)


EMBED_SOURCE = "embed"


def framable(request: Request, response: Response) -> Response:
    """Let the news site show this page in an iframe on its own pages."""
    response.headers["Content-Security-Policy"] = content_security_policy(
        runtime(request).settings.public_url, frame_ancestors="*")
    return response


@router.get("/embed")
def embed_page(request: Request) -> Response:
    return framable(request, page(request, "embed.html",
                                  subscribe_url=runtime(request).url("/subscribe")))


@router.post("/subscribe")
async def subscribe(request: Request) -> Response:
    fields = await read_fields(request)
    if isinstance(fields, Response):
        return fields
    source = single_line(fields.get("source", ""))[:60] or "api"
    response = await subscribe_fields(request, runtime(request), fields, source)
    # The embedded form's answers show inside the news site's iframe.
    return framable(request, response) if source == EMBED_SOURCE else response


async def subscribe_fields(request: Request, rt: Runtime, fields: dict[str, str],
                           source: str) -> Response:
    """Answer a subscribe request whose body has been read; the same answer for everyone."""
    limits = request.app.state.limits
    if not limits.allow_client(client_address(request)):
        return error(request, 429, code="rate_limited")
    if fields.get("website"):  # the honeypot: people never see it, bots fill it in
        log.info("honeypot filled from %s", client_address(request))
        return subscribed(request)
    try:
        address = normalize_address(fields.get("email", ""), allow_smtputf8=rt.settings.smtputf8)
    except AddressError as exc:
        if wants_json(request):
            return JSONResponse({"error": exc.code, "message": exc.message, "field": "email"},
                                status_code=422)
        # Give back what was typed (escaped, one line) so a typo is fixed, not retyped.
        typed = single_line(fields.get("email", ""))[:254]
        template = "embed.html" if source == EMBED_SOURCE else "subscribe.html"
        return page(request, template, status_code=422, action=rt.url("/subscribe"),
                    subscribe_url=rt.url("/subscribe"), source=source, email=typed,
                    error=exc.message)
    if not limits.allow_address(address):
        return subscribed(request)  # same answer: the limit must not reveal anything
    consent = client_consent(request, f"web:{source}")

    interval = store.confirmation_interval(rt.settings.confirm_emails_per_address_per_day)

    def work() -> store.SubscribeOutcome:
        with unit_of_work(rt.sessions) as session:
            return store.subscribe(session, address, consent, utcnow(), interval=interval)

    outcome = await run_in_threadpool(work)
    if outcome.send_confirmation:
        try:
            await run_in_threadpool(rt.ring, "chapar.send_confirmation", outcome.subscriber_id)
        except Exception:
            # The row says a confirmation is owed; the confirmation sweeper rings again.
            log.exception("could not enqueue confirmation for subscriber %s",
                          outcome.subscriber_id)
    return subscribed(request)


def client_consent(request: Request, source: str) -> store.Consent:
    """The consent a request expresses: its source, the client's address and user agent."""
    return store.Consent(
        source=source, ip=client_address(request),
        user_agent=single_line(request.headers.get("user-agent", ""))[:300] or None,
    )


def subscribed(request: Request) -> Response:
    if wants_json(request):
        return JSONResponse({"ok": True, "message": SUBSCRIBED_MESSAGE}, status_code=202)
    return page(request, "subscribed.html", status_code=200)


def token_error(request: Request, exc: TokenError) -> Response:
    if exc.reason == "expired":
        return error(request, 400, "این پیوند منقضی شده است. دوباره از صفحهٔ عضویت اقدام کنید.",
                     code="token_expired")
    return error(request, 400, "این پیوند نامعتبر است. پیوند را کامل از ایمیل کپی کنید.",
                 code="token_invalid")


def links(rt: Runtime, subscriber_id: int) -> dict[str, Any]:
    pref = rt.tokens.lasting(Purpose.PREFERENCES, subscriber_id)
    unsub = rt.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber_id)
    return {
        "preferences_url": rt.url(f"/preferences/{pref}"),
        "unsubscribe_url": rt.url(f"/unsubscribe/{unsub}"),
        "resubscribe_url": rt.url(f"/preferences/{pref}/resubscribe"),
        "export_url": rt.url(f"/preferences/{pref}/export.json"),
        "erase_url": rt.url(f"/preferences/{pref}/erase"),
        "subscribe_url": rt.url("/"),
    }


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    try:
        runtime(request).tokens.read_confirm(token)
    except TokenError as exc:
        return token_error(request, exc)
    return page(request, "confirm.html", action=runtime(request).url(f"/confirm/{token}"))


@router.post("/confirm/{token}")
def confirm(request: Request, token: str) -> Response:
    rt = runtime(request)
    try:
        subscriber_id, nonce = rt.tokens.read_confirm(token)
    except TokenError as exc:
        return token_error(request, exc)
    with unit_of_work(rt.sessions) as session:
        subscriber = store.confirm(session, subscriber_id, nonce, utcnow(),
                                   client_consent(request, "confirmation link"))
    if subscriber is None:
        return error(request, 404, "این عضویت دیگر وجود ندارد.", code="not_found")
    if wants_json(request):
        return JSONResponse({"ok": True, "status": subscriber.status.value})
    if subscriber.status is not Status.CONFIRMED:
        # An old link must not undo a later unsubscribe, nor confirm a later request
        # it was not mailed for; say where things stand instead.
        return preferences_view(request, subscriber,
                                "این پیوند تأیید قدیمی است و وضعیت عضویت شما را تغییر نداد.")
    return page(request, "confirmed.html", **links(rt, subscriber_id))


def issue_of_link(i: str) -> int | None:
    """The issue number an unsubscribe link carries (`?i=N`), if it looks like one."""
    return int(i) if i.isascii() and i.isdigit() and len(i) <= 9 else None


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str, i: str = "") -> Response:
    rt = runtime(request)
    try:
        subscriber_id = rt.tokens.read_lasting(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return token_error(request, exc)
    number = issue_of_link(i)
    action = f"/unsubscribe/{token}" + (f"?i={number}" if number is not None else "")
    return page(request, "unsubscribe.html", action=rt.url(action), **links(rt, subscriber_id))


@router.post("/unsubscribe/{token}")
def unsubscribe(request: Request, token: str, i: str = "") -> Response:
    """The RFC 8058 one-click target: no cookie, no login, no CSRF token, no redirect."""
    rt = runtime(request)
    try:
        subscriber_id = rt.tokens.read_lasting(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return token_error(request, exc)
    number = issue_of_link(i)
    with unit_of_work(rt.sessions) as session:
        # Counted for the issue only when that issue was addressed to this reader.
        detail = (results.unsubscribe_detail(number) if number is not None
                  and results.sent_issue_for(session, number, subscriber_id) else None)
        store.unsubscribe(session, subscriber_id, utcnow(), "unsubscribe link", detail)
    # Erased subscribers get the same page: the address is gone, the wish is honoured.
    if wants_json(request):
        return JSONResponse({"ok": True, "status": "unsubscribed"})
    return page(request, "unsubscribed.html", **links(rt, subscriber_id))


def preferences_subscriber(request: Request, token: str) -> int | Response:
    try:
        return runtime(request).tokens.read_lasting(Purpose.PREFERENCES, token)
    except TokenError as exc:
        return token_error(request, exc)


def preferences_view(request: Request, subscriber: Subscriber, notice: str | None = None) -> Response:
    rt = runtime(request)
    since = subscriber.confirmed_at if subscriber.status is Status.CONFIRMED else None
    return page(request, "preferences.html", email=subscriber.email,
                status=subscriber.status.value, status_label=STATUS_LABELS[subscriber.status],
                since=jalali_date(since, rt.settings.tz) if since else None, notice=notice,
                clicks_note=CLICK_NOTES[rt.settings.track_clicks], opens_note=OPENS_NOTE,
                **links(rt, subscriber.id))


@router.get("/preferences/{token}")
def preferences(request: Request, token: str) -> Response:
    subscriber_id = preferences_subscriber(request, token)
    if isinstance(subscriber_id, Response):
        return subscriber_id
    with runtime(request).sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return page(request, "erased.html", subscribe_url=runtime(request).url("/"))
        return preferences_view(request, subscriber)


@router.post("/preferences/{token}/resubscribe")
def resubscribe(request: Request, token: str) -> Response:
    subscriber_id = preferences_subscriber(request, token)
    if isinstance(subscriber_id, Response):
        return subscriber_id
    rt = runtime(request)
    with unit_of_work(rt.sessions) as session:
        subscriber = store.resubscribe(session, subscriber_id, utcnow(),
                                       client_consent(request, "preferences page"))
        if subscriber is None:
            return page(request, "erased.html", subscribe_url=rt.url("/"))
        notice = "دوباره عضو شدید." if subscriber.status is Status.CONFIRMED else None
        return preferences_view(request, subscriber, notice)


@router.get("/preferences/{token}/export.json")
def export(request: Request, token: str) -> Response:
    subscriber_id = preferences_subscriber(request, token)
    if isinstance(subscriber_id, Response):
        return subscriber_id
    rt = runtime(request)
    with rt.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return error(request, 404, "اطلاعاتی از این نشانی نزد ما نیست.", code="not_found")
        data = store.export(subscriber, rt.settings.timezone)
    return JSONResponse(data, headers={
        "Content-Disposition": 'attachment; filename="chapar-my-data.json"',
        "Cache-Control": "no-store",
    })


@router.post("/preferences/{token}/erase")
async def erase(request: Request, token: str) -> Response:
    subscriber_id = preferences_subscriber(request, token)
    if isinstance(subscriber_id, Response):
        return subscriber_id
    fields = await read_fields(request)
    if isinstance(fields, Response):
        return fields
    if fields.get("confirm") != "yes":
        return error(request, 400, "برای پاک کردن، گزینهٔ تأیید را علامت بزنید.",
                     code="confirmation_required")
    rt = runtime(request)

    def work() -> None:
        with unit_of_work(rt.sessions) as session:
            store.erase(session, subscriber_id, utcnow())

    await run_in_threadpool(work)
    if wants_json(request):
        return JSONResponse({"ok": True, "status": "erased"})
    return page(request, "erased.html", subscribe_url=rt.url("/"))
