"""Imports staff start on the desk: the upload checked, the job kept in the database, run by a worker.

The rows go in through the importer the command line uses (importer.import_batches),
a batch per transaction. Each batch's transaction also moves the job's position and
counts and stores its rejected lines, so whatever a worker has committed is exactly
what the job says. A worker that dies stops renewing the job's lease; the sweeper
(every minute from beat) hands the job to another worker, which resumes from the
committed position, and fails it with a stated reason after MAX_ATTEMPTS workers.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import PurePath

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.persian import persian_digits, single_line
from service.runtime import Runtime
from service.staff import audit
from service.staff.audit import Actor
from service.subscribers.importer import ImportReport, Rejected, import_batches, read_addresses
from service.subscribers.models import ImportJob, ImportRejection, ImportStatus, Status

log = logging.getLogger(__name__)

TASK = "chapar.run_import"
MAX_ATTEMPTS = 3  # workers that may take a job up before it is failed
RING_AGAIN_AFTER = timedelta(minutes=1)  # a queued job no worker took: its ring was lost
EXTENSIONS = (".csv", ".txt")


class UploadRefused(ValueError):
    """The upload cannot be imported; `message` says why in Persian, str() in English."""

    def __init__(self, message: str, english: str) -> None:
        super().__init__(english)
        self.message = message


@dataclass(frozen=True)
class Upload:
    """A checked file: its text, and how many addresses it names."""

    filename: str
    size: int
    text: str
    total: int


def size_label(size: int) -> str:
    """A file size for people: «۱۰ مگابایت», «۶۴ کیلوبایت»."""
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return persian_digits(f"{size // (1024 * 1024)} مگابایت")
    return persian_digits(f"{size // 1024} کیلوبایت")


def check_upload(filename: str, data: bytes, max_bytes: int) -> Upload:
    """Read an uploaded file as the importer will, or say clearly why it cannot be imported."""
    name = single_line(PurePath(filename.replace("\\", "/")).name)[:200] or "upload.csv"
    if not data:
        raise UploadRefused("پرونده خالی است.", "the file is empty")
    if len(data) > max_bytes:
        raise UploadRefused(
            f"پرونده بزرگ‌تر از {size_label(max_bytes)} است؛ آن را چند بخش کنید.",
            f"the file is larger than {max_bytes // 1024} KiB")
    if not name.lower().endswith(EXTENSIONS) or b"\x00" in data:  # a spreadsheet, UTF-16, a picture
        raise UploadRefused("این پرونده CSV نیست؛ یک پروندهٔ ‎.csv‎ (متن، با ستون ایمیل) بفرستید.",
                            "not a CSV file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadRefused(
            "نویسه‌های پرونده UTF-8 نیست. در Excel آن را با «CSV UTF-8» ذخیره کنید و دوباره بفرستید.",
            "the file is not UTF-8 text") from None
    try:
        total = sum(1 for _ in read_addresses(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UploadRefused("پرونده CSV درستی نیست و خوانده نشد.",
                            f"not a readable CSV file: {exc}") from None
    except ValueError as exc:
        raise UploadRefused("ستون ایمیل پیدا نشد: یکی از ستون‌ها را «email» یا «ایمیل» بنامید.",
                            str(exc)) from None
    if total == 0:
        raise UploadRefused("پرونده هیچ نشانی ایمیلی ندارد.", "the file holds no addresses")
    return Upload(name, len(data), text, total)


def start_import(session: Session, actor: Actor, upload: Upload, *, source: str, import_as: Status,
                 now: datetime) -> ImportJob:
    """Queue an import of a checked upload and audit it; the caller rings TASK after its commit."""
    if import_as not in (Status.CONFIRMED, Status.PENDING):
        raise ValueError("an import adds readers as confirmed or pending")
    source = single_line(source)[:200] or f"import:{upload.filename}"
    job = ImportJob(created_at=now, updated_at=now, actor_id=actor.account_id, actor=actor.label,
                    filename=upload.filename, size=upload.size, source=source, import_as=import_as,
                    content=upload.text, status=ImportStatus.QUEUED, total=upload.total, processed=0,
                    added=0, already_present=0, suppressed=0, rejected=0, attempts=0)
    session.add(job)
    session.flush()
    audit.record(session, actor, "subscribers.import", f"import:{job.id}", now,
                 f"file={upload.filename} addresses={upload.total} source={source} "
                 f"as={import_as.value}")
    return job


class Ousted(Exception):
    """Another worker took the job over (this one's lease ran out): its batch is rolled back."""


def claim(session: Session, job_id: int, now: datetime, lease: timedelta) -> int | None:
    """Take a queued job, or a running one whose worker stopped renewing it; the attempt number.

    One conditional UPDATE, so of two workers rung for the same job one gets it.
    """
    taken = session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.attempts < MAX_ATTEMPTS,
               or_(ImportJob.status == ImportStatus.QUEUED,
                   and_(ImportJob.status == ImportStatus.RUNNING, ImportJob.lease_until < now)))
        .values(status=ImportStatus.RUNNING, attempts=ImportJob.attempts + 1, lease_until=now + lease,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        return None
    job = session.get(ImportJob, job_id, populate_existing=True)
    assert job is not None
    if job.started_at is None:
        job.started_at = now
    return job.attempts


def run_import(rt: Runtime, job_id: int, clock: Callable[[], datetime]) -> None:
    """The `chapar.run_import` task: import the job's file from where it stands; a no-op once ended."""
    lease = timedelta(seconds=rt.settings.import_lease_seconds)
    with unit_of_work(rt.sessions) as session:
        attempt = claim(session, job_id, clock(), lease)
        if attempt is None:
            return
        job = session.get(ImportJob, job_id)
        assert job is not None
        text, position = job.content or "", job.processed
        source, import_as = job.source, job.import_as
    log.info("import %s: attempt %s from address %s", job_id, attempt, position)

    def within(session: Session, rows: int, report: ImportReport) -> None:
        nonlocal position
        now = clock()
        moved = session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.attempts == attempt,
                   ImportJob.status == ImportStatus.RUNNING, ImportJob.processed == position)
            .values(processed=ImportJob.processed + rows, added=ImportJob.added + report.added,
                    already_present=ImportJob.already_present + report.already_present,
                    suppressed=ImportJob.suppressed + report.suppressed,
                    rejected=ImportJob.rejected + len(report.rejected),
                    lease_until=now + lease, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            raise Ousted
        session.add_all(ImportRejection(job_id=job_id, line=r.line, value=r.value, code=r.code)
                        for r in report.rejected)
        position += rows

    rows = islice(read_addresses(io.StringIO(text, newline="")), position, None)
    try:
        for _ in import_batches(rt.sessions, rows, source=source, status=import_as, clock=clock,
                                batch_size=rt.settings.import_batch_size,
                                allow_smtputf8=rt.settings.smtputf8, within=within):
            pass
    except Ousted:
        log.warning("import %s: another worker took it over; this one stops", job_id)
        return
    except Exception as exc:
        log.exception("import %s failed", job_id)
        finish(rt, job_id, attempt, clock(), ImportStatus.FAILED,
               f"خطای پیش‌بینی‌نشده هنگام درون‌ریزی | unexpected error: {type(exc).__name__}: {exc}"[:2000])
        return
    finish(rt, job_id, attempt, clock(), ImportStatus.DONE)


def finish(rt: Runtime, job_id: int, attempt: int, now: datetime, status: ImportStatus,
           error: str | None = None) -> None:
    """End the job (unless another worker holds it now) and drop the uploaded file."""
    with unit_of_work(rt.sessions) as session:
        session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.attempts == attempt,
                   ImportJob.status == ImportStatus.RUNNING)
            .values(status=status, error=error, finished_at=now, lease_until=None, content=None,
                    updated_at=now)
            .execution_options(synchronize_session=False)
        )


ABANDONED = ("هر بار کارگری که درون‌ریزی را در دست داشت پیش از پایان آن از کار افتاد؛ "
             "نشانی‌هایی که تا آن‌جا افزوده شد می‌ماند. پرونده را دوباره بفرستید تا بقیه افزوده شود | "
             "every worker that took this import up stopped before it ended; what was added stays. "
             "Upload the file again to add the rest (nothing is added twice)")


@dataclass(frozen=True)
class SweepResult:
    rung: list[int]
    failed: list[int]


def sweep_due(session: Session, now: datetime) -> SweepResult:
    """Fail jobs abandoned MAX_ATTEMPTS times; name the others a worker should take up."""
    expired = and_(ImportJob.status == ImportStatus.RUNNING, ImportJob.lease_until < now)
    failed = list(session.scalars(select(ImportJob.id).where(expired, ImportJob.attempts >= MAX_ATTEMPTS)))
    if failed:
        session.execute(
            update(ImportJob).where(ImportJob.id.in_(failed))
            .values(status=ImportStatus.FAILED, error=ABANDONED, finished_at=now, lease_until=None,
                    content=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    waiting = and_(ImportJob.status == ImportStatus.QUEUED, ImportJob.updated_at <= now - RING_AGAIN_AFTER)
    rung = list(session.scalars(select(ImportJob.id).where(or_(waiting, expired),
                                                           ImportJob.attempts < MAX_ATTEMPTS)
                                .order_by(ImportJob.id)))
    return SweepResult(rung, failed)


def sweep(rt: Runtime, now: datetime) -> SweepResult:
    """The `chapar.sweep_imports` task: settle abandoned jobs, commit, then ring for the rest."""
    with unit_of_work(rt.sessions) as session:
        result = sweep_due(session, now)
    for job_id in result.rung:
        rt.ring(TASK, job_id)
    if result.failed:
        log.warning("imports failed after %s stopped workers: %s", MAX_ATTEMPTS, result.failed)
    return result


def recent(session: Session, limit: int = 20) -> list[ImportJob]:
    return list(session.scalars(select(ImportJob).order_by(ImportJob.id.desc()).limit(limit)))


def rejected_lines(session: Session, job_id: int) -> list[Rejected]:
    return [Rejected(r.line, r.value, r.code) for r in session.scalars(
        select(ImportRejection).where(ImportRejection.job_id == job_id)
        .order_by(ImportRejection.line, ImportRejection.id))]
