"""Rendering reader pages, and the one error page every failure ends on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from service.persian import persian_digits

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["fa_digits"] = persian_digits

ERRORS: dict[int, tuple[str, str]] = {
    400: ("درخواست نادرست", "اطلاعات فرستاده‌شده را نتوانستیم بخوانیم."),
    404: ("پیدا نشد", "صفحه‌ای که می‌خواستید پیدا نشد."),
    405: ("روش نادرست", "این صفحه این نوع درخواست را نمی‌پذیرد."),
    413: ("درخواست بیش از اندازه بزرگ", "اطلاعات فرستاده‌شده بیش از اندازه بزرگ است."),
    415: ("قالب پشتیبانی نمی‌شود", "این قالب داده پشتیبانی نمی‌شود؛ فرم یا JSON بفرستید."),
    422: ("اطلاعات نادرست", "برخی از اطلاعات فرستاده‌شده درست نیست."),
    429: ("درخواست‌های بیش از اندازه", "در مدت کوتاهی درخواست‌های زیادی فرستاده‌اید. کمی بعد دوباره تلاش کنید."),
    500: ("خطای سرور", "مشکلی پیش آمد. دوباره تلاش کنید."),
    503: ("سرویس در دسترس نیست", "سرویس موقتاً در دسترس نیست. کمی بعد دوباره تلاش کنید."),
}
# While the database is unreachable: how long a client (a browser, a mail client retrying
# a one-click unsubscribe, an API caller) is asked to wait before trying again.
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = ("سرویس موقتاً در دسترس نیست و چیزی از درخواست شما ثبت نشد. "
                       "چند دقیقهٔ دیگر دوباره تلاش کنید.")

# Stable machine-readable codes for JSON clients; the Persian text is for people.
CODES: dict[int, str] = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
    415: "unsupported_media_type", 422: "invalid", 429: "rate_limited", 500: "server_error",
    503: "unavailable",
}


def page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    rt = request.app.state.runtime
    context.setdefault("list_name", rt.settings.list_name)
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def wants_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    accept = request.headers.get("accept", "")
    return ctype == "application/json" or (
        "application/json" in accept and "text/html" not in accept
    ) or request.url.path.startswith("/api/")


def error(request: Request, status_code: int, message: str | None = None,
          code: str | None = None) -> Response:
    heading, default = ERRORS.get(status_code, ERRORS[400])
    text = message or default
    if wants_json(request):
        return JSONResponse({"error": code or CODES.get(status_code, "bad_request"), "message": text},
                            status_code=status_code)
    rt = request.app.state.runtime
    return page(request, "error.html", status_code=status_code, heading=heading, message=text,
                subscribe_url=rt.url("/"))


def unavailable(request: Request) -> Response:
    """503 while the database cannot be reached: a Persian page or JSON, with Retry-After."""
    response = error(request, 503, UNAVAILABLE_MESSAGE)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response
