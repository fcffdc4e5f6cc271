"""ASGI guards applied before any route: request size limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.web.pages import error


class BodyTooLarge(Exception):
    pass


class LimitBodySize:
    """Refuse request bodies over `max_bytes` with 413, whether declared or streamed.

    Paths under /api/ (CMS article batches, bounce messages) are held to
    `api_max_bytes` instead, when it is given, and the upload forms named in `uploads`
    to their own limit, refused with their own message. The refusal is the same
    Persian error page (or JSON error) as every other failure.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, api_max_bytes: int | None = None,
                 uploads: dict[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_max_bytes = api_max_bytes
        self.uploads = uploads or {}

    def limit_for(self, scope: Scope) -> int:
        """The byte limit for this request's path."""
        path = str(scope["path"])
        if path in self.uploads:
            return self.uploads[path][0]
        if self.api_max_bytes is not None and path.startswith("/api/"):
            return self.api_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await self._refuse(scope, receive, send, 400)
            return
        if declared is not None and int(declared) > max_bytes:
            await self._refuse(scope, receive, send, 413)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:  # too late for an error page; the connection just ends
                raise
            await self._refuse(scope, receive, send, 413)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status_code: int) -> None:
        upload = self.uploads.get(str(scope["path"]))
        response = error(Request(scope), status_code, upload[1] if upload and status_code == 413 else None)
        await response(scope, receive, send)
