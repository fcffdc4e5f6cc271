"""The API key: `Authorization: Bearer <key>` or `X-API-Key`, compared in constant time.

Every /api/v1 route checks it here; until CHAPAR_API_KEY is set the API is off.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from service.runtime import Runtime


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key")


def authorized(request: Request, api_key: str) -> bool:
    presented = presented_key(request)
    if not api_key or presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), api_key.encode("utf-8"))


def key_refusal(request: Request, rt: Runtime) -> JSONResponse | None:
    """The answer to a caller without the API key; None lets the request through."""
    if not rt.settings.api_key:  # the endpoint is off until a key is configured
        return JSONResponse({"error": "not_found"}, status_code=404)
    if not authorized(request, rt.settings.api_key):
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return None
