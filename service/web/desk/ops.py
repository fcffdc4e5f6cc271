"""The ops console at /desk/ops: the snapshot, live (htmx polls the panel), and its actions.

Every figure comes from service.ops.status.snapshot, the function `chapar status` and
/metrics read; every action is a function of service.ops.actions, audited there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool

from service.clock import utcnow
from service.ops import actions
from service.ops.actions import Settle
from service.ops.incidents import LABELS
from service.ops.mailflow import GMAIL_COMPLAINT_LIMIT, GMAIL_COMPLAINT_TARGET
from service.ops.status import snapshot
from service.persian import persian_digits
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.permissions import Permission
from service.web.desk.access import client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)
NOTICE_SALT = "chapar.desk-ops-notice"
ISSUE_ACTIONS: dict[str, Callable[[Runtime, Actor, int], str]] = {
    "pause": lambda rt, a, n: actions.change_send(rt, a, "pause", n, utcnow()),
    "resume": lambda rt, a, n: actions.change_send(rt, a, "resume", n, utcnow()),
    "cancel": lambda rt, a, n: actions.change_send(rt, a, "cancel", n, utcnow()),
    "retry-deferred": lambda rt, a, n: actions.retry_deferred_now(rt, a, n, utcnow()),
    "settle-resend": lambda rt, a, n: actions.settle(rt, a, n, Settle.RESEND, utcnow()),
    "settle-sent": lambda rt, a, n: actions.settle(rt, a, n, Settle.AS_SENT, utcnow()),
}


def fa(value: object) -> str:
    return persian_digits(value)


async def console(request: Request, template: str, **context: Any) -> Response:
    rt = runtime(request)
    snap = await run_in_threadpool(snapshot, rt, utcnow())
    viewer = current_viewer(request)
    return desk_page(request, template, viewer, snap=snap, fa=fa, incident_labels=LABELS,
                     may_act=viewer.may(Permission.OPS_ACT), tz=rt.settings.tz,
                     resend_uncertain=rt.settings.resend_uncertain,
                     complaint_target=GMAIL_COMPLAINT_TARGET, complaint_limit=GMAIL_COMPLAINT_LIMIT,
                     **context)


def notices(request: Request) -> URLSafeSerializer:
    """The outcome shown after an action travels signed, so a crafted link cannot put words
    on the console."""
    return URLSafeSerializer(runtime(request).settings.secret_key, salt=NOTICE_SALT)


def shown(request: Request, signed: str) -> str:
    try:
        value = notices(request).loads(signed) if signed else ""
    except BadSignature:
        return ""
    return value if isinstance(value, str) else ""


@router.get("/desk/ops")
async def ops_page(request: Request, done: str = "", refused: str = "") -> Response:
    return await console(request, "ops.html", notice=shown(request, done),
                         refusal=shown(request, refused))


@router.get("/desk/ops/live")
async def ops_live(request: Request) -> Response:
    """The console's panel alone, for htmx to swap in every few seconds."""
    return await console(request, "_ops_live.html")


def actor(request: Request) -> Actor:
    viewer = current_viewer(request)
    return Actor(viewer.account_id, viewer.email, client_address(request))


async def act(request: Request, action: Callable[[Runtime, Actor], str]) -> Response:
    """Run an action, then show the console with what happened (POST, redirect, GET)."""
    try:
        result = await run_in_threadpool(action, runtime(request), actor(request))
    except actions.ActionRefused as exc:
        return outcome(request, "refused", str(exc))
    return outcome(request, "done", result)


def outcome(request: Request, kind: str, text: str) -> Response:
    return back_to("/desk/ops?" + urlencode({kind: notices(request).dumps(text)}))


@router.post("/desk/ops/issues/{number}/{action}")
async def issue_action(request: Request, number: int, action: str) -> Response:
    chosen = ISSUE_ACTIONS.get(action)
    if chosen is None:
        return outcome(request, "refused", "کار ناشناخته")
    return await act(request, lambda rt, a: chosen(rt, a, number))


@router.post("/desk/ops/domains/pause")
async def domain_pause(request: Request, domain: Annotated[str, Form()] = "") -> Response:
    return await act(request, lambda rt, a: actions.pause_domain(rt, a, domain, utcnow()))


@router.post("/desk/ops/domains/{domain}/resume")
async def domain_resume(request: Request, domain: str) -> Response:
    return await act(request, lambda rt, a: actions.resume_domain(rt, a, domain, utcnow()))


@router.post("/desk/ops/workers/{name}/drain")
async def worker_drain(request: Request, name: str) -> Response:
    return await act(request, lambda rt, a: actions.drain_worker(rt, a, name, utcnow()))
