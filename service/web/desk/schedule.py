"""The weekly schedule page: the slot (staff.manage changes it), the next five, skipping a week."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import weekly
from service.persian import WEEKDAYS
from service.staff.permissions import NotPermitted
from service.web.desk.access import current_viewer, guard, runtime
from service.web.desk.issues import who_of
from service.web.desk.view import back_to, desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)
NOTICES = {"set": "زمان هفتگی ذخیره شد.", "skip": "این هفته چیزی فرستاده نمی‌شود.",
           "unskip": "این هفته دوباره در برنامه است."}


def schedule_page(request: Request, *, error: str = "", notice: str = "",
                  status_code: int = 200) -> Response:
    rt = runtime(request)
    with rt.sessions() as db:
        slot = weekly.current(db, rt.settings)
        coming = weekly.coming_slots(slot, utcnow())
        rows = weekly.slot_rows(db, coming)
        return desk_page(request, "schedule.html", current_viewer(request), status_code=status_code,
                         slot=slot, weekdays=WEEKDAYS, timezone=rt.settings.timezone,
                         slots=[(at, rows.get(at)) for at in coming], error=error, notice=notice)


@router.get("/desk/schedule")
def show(request: Request, done: str = "") -> Response:
    return schedule_page(request, notice=NOTICES.get(done, ""))


def change(request: Request, name: str, apply: weekly.Change) -> Response:
    try:
        with unit_of_work(runtime(request).sessions) as db:
            apply(db, who_of(request, current_viewer(request)), utcnow())
    except (weekly.ScheduleError, NotPermitted, ValueError) as exc:
        return schedule_page(request, error=str(exc).partition(" | ")[0], status_code=422)
    return back_to(f"/desk/schedule?done={name}")


@router.post("/desk/schedule")
def set_slot(request: Request, weekday: int = Form(-1), time: str = Form("")) -> Response:
    hour, _, minute = time.partition(":")
    if not (hour.isdigit() and minute.isdigit()):
        return schedule_page(request, error="ساعت را به شکل ۰۸:۰۰ وارد کنید.", status_code=422)
    return change(request, "set", lambda db, who, now: weekly.set_weekly(
        db, who, weekday, int(hour), int(minute), now))


@router.post("/desk/schedule/skip")
def skip(request: Request, slot: str = Form("")) -> Response:
    settings = runtime(request).settings
    return change(request, "skip", lambda db, who, now: weekly.skip(
        db, settings, who, datetime.fromisoformat(slot), now))


@router.post("/desk/schedule/unskip")
def unskip(request: Request, slot: str = Form("")) -> Response:
    return change(request, "unskip", lambda db, who, now: weekly.unskip(
        db, who, datetime.fromisoformat(slot), now))
