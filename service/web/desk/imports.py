"""Importing readers from a CSV file on the desk: upload, the job's live page, its report.

The upload is checked and queued by service.subscribers.imports (audited there); a
worker runs it through the importer `chapar subscribers import` uses.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from service.clock import utcnow
from service.db import unit_of_work
from service.settings import Settings
from service.staff.audit import Actor
from service.subscribers import imports
from service.subscribers.importer import write_rejected
from service.subscribers.imports import UploadRefused
from service.subscribers.models import ImportJob, ImportStatus, Status
from service.web.desk.access import client_address, current_viewer, guard, runtime
from service.web.desk.view import back_to, desk_page

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

UPLOAD_PATH = "/desk/readers/import"
STATUS_LABELS = {ImportStatus.QUEUED: "در صف", ImportStatus.RUNNING: "در حال درون‌ریزی",
                 ImportStatus.DONE: "تمام‌شده", ImportStatus.FAILED: "ناموفق"}
AS_LABELS = {Status.CONFIRMED: "تأییدشده", Status.PENDING: "در انتظار تأیید"}
POLL_SECONDS = 2
STOP_POLLING = 286  # htmx's status for a polled answer after which it stops polling


def upload_limit(settings: Settings) -> tuple[int, str]:
    """The request size the upload form may reach (the file and the form around it), and the
    refusal for a larger one."""
    return settings.import_max_bytes + 64 * 1024, (
        f"پرونده بزرگ‌تر از {imports.size_label(settings.import_max_bytes)} است؛ "
        "آن را چند بخش کنید و هر بخش را جدا بفرستید.")


def import_page(request: Request, *, status_code: int = 200, **context: Any) -> Response:
    with runtime(request).sessions() as session:
        recent = imports.recent(session)
    context.setdefault("source", "")
    context.setdefault("import_as", Status.CONFIRMED.value)
    return desk_page(request, "import.html", current_viewer(request), status_code=status_code,
                     recent=recent, labels=STATUS_LABELS, as_labels=AS_LABELS,
                     max_size=imports.size_label(runtime(request).settings.import_max_bytes), **context)


@router.get(UPLOAD_PATH)
def upload_form(request: Request) -> Response:
    return import_page(request)


@router.post(UPLOAD_PATH)
async def upload(request: Request) -> Response:
    """Check the file, queue its import, and open the job's page."""
    rt = runtime(request)
    form = await request.form(max_files=1, max_fields=50)
    source = str(form.get("source") or "").strip()
    import_as = str(form.get("import_as") or "")
    again = {"source": source, "import_as": import_as or Status.CONFIRMED.value}
    file = form.get("file")
    if not isinstance(file, UploadFile) or not (file.filename or ""):
        return import_page(request, status_code=422, error="یک پروندهٔ CSV انتخاب کنید.", **again)
    if import_as not in (Status.CONFIRMED.value, Status.PENDING.value):
        return import_page(request, status_code=422, error="وضعیت خوانندگان تازه را انتخاب کنید.", **again)
    if form.get("consent") != "yes":
        return import_page(request, status_code=422, error=(
            "تأیید کنید که صاحبان این نشانی‌ها به دریافت این خبرنامه رضایت داده‌اند."), **again)
    data = await file.read(rt.settings.import_max_bytes + 1)
    try:
        checked = await run_in_threadpool(imports.check_upload, file.filename or "", data,
                                          rt.settings.import_max_bytes)
    except UploadRefused as exc:
        return import_page(request, status_code=422, error=exc.message, **again)
    viewer = current_viewer(request)
    actor = Actor(viewer.account_id, viewer.email, client_address(request))

    def queue() -> int:
        with unit_of_work(rt.sessions) as session:
            job = imports.start_import(session, actor, checked, source=source, import_as=Status(import_as),
                                       now=utcnow())
            job_id = job.id
        try:
            rt.ring(imports.TASK, job_id)  # after the commit
        except Exception:  # the broker is away: the job waits, and the sweeper rings again
            log.warning("could not ring a worker for import %s; the sweeper will", job_id, exc_info=True)
        return job_id

    return back_to(f"/desk/readers/imports/{await run_in_threadpool(queue)}")


def job_or_404(request: Request, job_id: int) -> ImportJob:
    with runtime(request).sessions() as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise HTTPException(404, "no such import")
        return job


@router.get("/desk/readers/imports/{job_id}")
def job_page(request: Request, job_id: int) -> Response:
    """The job's figures; while it runs, the page asks for them again every few seconds."""
    job = job_or_404(request, job_id)
    rt = runtime(request)
    percent = 100.0 * job.processed / job.total if job.total else 100.0
    fragment = bool(request.headers.get("hx-request"))
    # 286 tells htmx to stop asking: the import has ended, the figures will not change.
    return desk_page(request, "import_job.html", current_viewer(request),
                     status_code=STOP_POLLING if fragment and job.finished else 200, job=job,
                     percent=percent, labels=STATUS_LABELS, as_labels=AS_LABELS, read_at=utcnow(),
                     tz=rt.settings.tz, poll=POLL_SECONDS, fragment=fragment)


@router.get("/desk/readers/imports/{job_id}/rejected.csv")
def rejected_report(request: Request, job_id: int) -> Response:
    """The rejected lines as CSV: line number, the line's value, the reason in Persian and English."""
    job_or_404(request, job_id)
    with runtime(request).sessions() as session:
        lines = imports.rejected_lines(session, job_id)
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads the Persian reasons as UTF-8 only with the mark
    write_rejected(out, lines)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="import-{job_id}-rejected.csv"',
        "Cache-Control": "no-store",
    })
