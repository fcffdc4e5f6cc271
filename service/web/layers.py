"""The ASGI layers around the whole app, outside even its error handling.

They wrap Starlette's own stack (see ChaparApp in app.py), so every response gets
them: pages, JSON, the 404/405/413/500 error pages and the body-size refusals.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Reader pages style themselves with inline <style> blocks and have no scripts of their
# own; staff pages load their scripts and styles from /static/ on the same origin.
# Issues in the archive show the news site's article images, which may be on any host.
POLICY = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
          "script-src 'self'; connect-src 'self'; base-uri 'none'")


def content_security_policy(public_url: str, frame_ancestors: str = "'none'") -> str:
    """The one Content-Security-Policy of every page; only who may frame it varies.

    Forms post to absolute URLs built from CHAPAR_PUBLIC_URL, which need not be the
    host a page was fetched from (another name for the same server), so that origin
    is allowed as a form target beside the page's own.
    """
    parts = urlsplit(public_url)
    public_origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    form_action = " ".join(filter(None, ("'self'", public_origin)))
    return f"{POLICY}; form-action {form_action}; frame-ancestors {frame_ancestors}"


class SecurityHeaders:
    """Add the security headers to every response that did not set its own.

    A response that sets its own Content-Security-Policy (the embeddable form) chooses
    who may frame it; every other response may not be framed at all.
    """

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = self.policy
                    headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)


HEAD_ASKED = "chapar.head"


class HeadAsGet:
    """Answer HEAD wherever GET is answered: run the GET and send its headers only.

    FastAPI routes list only the methods they were declared with, so without this
    an uptime monitor's HEAD / would get 405. The GET's Content-Length is kept, as
    HTTP asks of a HEAD answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # The routes see a GET; the one that must know it was a HEAD (a link scanner's
        # request is not a click, service.digests.click_counts) reads HEAD_ASKED.
        await self.app(dict(scope, method="GET", **{HEAD_ASKED: True}), receive, send_headers_only)
