"""Desk imports run by real Celery worker processes on PostgreSQL with a Redis broker.

The upload goes through the desk over HTTP, the worker is rung through Redis, and the
job page is read as a person would: queued, then its figures, then the report. A
worker killed with SIGKILL mid-file leaves the job running under a lease; once the
lease runs out the sweeper rings, another worker resumes from the committed position,
and every address ends up added exactly once.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.clock import utcnow
from service.db import unit_of_work
from service.persian import persian_digits
from service.runtime import Runtime
from service.subscribers import imports, store
from service.subscribers.models import ImportJob, ImportRejection, ImportStatus, Status, Subscriber
from tests.conftest import make_settings, truncate_all
from tests.staff.factories import staff_account
from tests.support.processes import ChaparProcess, start_worker
from tests.web.desk.support import csrf_from, desk_client, sign_in

LEASE_SECONDS = 2.0


@pytest.fixture
def rt(postgresql_url: str, redis_db: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(make_settings(
        tmp_path, database_url=postgresql_url, broker_url=redis_db, import_batch_size=20,
        import_lease_seconds=LEASE_SECONDS))
    truncate_all(runtime)
    yield runtime
    truncate_all(runtime)
    runtime.close()


def readers_file(valid: int, *, bad_every: int = 50) -> tuple[bytes, int, int]:
    """A CSV of `valid` distinct addresses with a bad line every `bad_every`; (data, valid, bad)."""
    lines = ["name,email"]
    bad = 0
    for n in range(valid):
        lines.append(f"Reader {n},reader{n}@example.com")
        if n % bad_every == 0:
            lines.append(f"Broken {n},reader{n}-at-example.com")
            bad += 1
    lines += ["Left,left@example.com", "Gone,gone@example.com"]
    return ("\n".join(lines) + "\n").encode(), valid, bad


def upload(rt: Runtime, data: bytes) -> tuple[object, str]:
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
    client = desk_client(rt)
    assert sign_in(client, "boss@example.com").status_code == 303
    form = client.get("/desk/readers/import")
    response = client.post("/desk/readers/import", data={
        "csrf_token": csrf_from(form), "source": "import:print-1405", "import_as": "confirmed",
        "consent": "yes"}, files={"file": ("readers.csv", data, "text/csv")})
    assert response.status_code == 303, response.text
    return client, response.headers["location"]


def the_job(rt: Runtime) -> ImportJob:
    with rt.sessions() as db:
        return db.scalars(select(ImportJob)).one()


def wait_for(condition: str, test: object, worker: ChaparProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not test():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not {condition} in {timeout}s; worker output:\n{worker.tail()}")
        time.sleep(0.05)


def suppress_two(rt: Runtime) -> None:
    """left@ unsubscribed, gone@ erased: an import must bring neither back."""
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        left = store.subscribe(session, "left@example.com", store.Consent("web:test"), now).subscriber_id
        store.unsubscribe(session, left, now, "test")
        gone = store.subscribe(session, "gone@example.com", store.Consent("web:test"), now).subscriber_id
        store.erase(session, gone, now)


def figures(page: str) -> tuple[str, str]:
    found = re.search(r'id="import-progress">([^<]+)<', page)
    status = re.search(r'id="import-status">([^<]+)<', page)
    assert found and status
    return status.group(1), found.group(1)


def test_an_upload_is_imported_by_a_worker_and_its_page_shows_progress_then_the_report(rt: Runtime) -> None:
    suppress_two(rt)
    data, valid, bad = readers_file(300)
    client, location = upload(rt, data)  # no worker yet: the job waits in the queue
    assert figures(client.get(location).text) == ("در صف", "۰ از ۳۰۸ نشانی خوانده شد (۰٪)")  # type: ignore[attr-defined]
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        seen: list[tuple[str, str]] = []

        def finished() -> bool:
            live = client.get(location, headers={"HX-Request": "true"})  # type: ignore[attr-defined]
            seen.append(figures(live.text))
            return bool(live.status_code == 286)  # htmx's "stop polling"

        wait_for("done", finished, worker)
    finally:
        worker.stop()
    assert seen[-1] == ("تمام‌شده", "۳۰۸ از ۳۰۸ نشانی خوانده شد (۱۰۰٪)")
    job = the_job(rt)
    assert job.status is ImportStatus.DONE and job.attempts == 1
    assert (job.added, job.already_present, job.suppressed, job.rejected) == (valid, 1, 1, bad)

    report = client.get(f"{location}/rejected.csv")  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert len(rows) == bad and rows[0] == {"line": "3", "value": "reader0-at-example.com",
                                            "reason_fa": "این نشانی ایمیل درست نیست.",
                                            "reason_en": "not a valid email address"}
    with rt.sessions() as db:
        left = store.find_by_email(db, "left@example.com")
        assert left is not None and left.status is Status.UNSUBSCRIBED
        assert store.find_by_email(db, "gone@example.com") is None

    # The same file again: nothing added.
    _, again = upload_again(rt, client, data)
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        wait_for("done again", lambda: job_at(rt, again).finished, worker)
    finally:
        worker.stop()
    second = job_at(rt, again)
    assert (second.added, second.already_present, second.suppressed) == (0, valid + 1, 1)


def upload_again(rt: Runtime, client: object, data: bytes) -> tuple[object, int]:
    form = client.get("/desk/readers/import")  # type: ignore[attr-defined]
    response = client.post("/desk/readers/import", data={  # type: ignore[attr-defined]
        "csrf_token": csrf_from(form), "source": "", "import_as": "pending", "consent": "yes"},
        files={"file": ("readers.csv", data, "text/csv")})
    return client, int(response.headers["location"].rsplit("/", 1)[1])


def job_at(rt: Runtime, job_id: int) -> ImportJob:
    with rt.sessions() as db:
        job = db.get(ImportJob, job_id)
        assert job is not None
        return job


def test_a_worker_killed_mid_file_does_not_leave_the_job_running(rt: Runtime) -> None:
    data, valid, bad = readers_file(4000)
    worker = start_worker(rt.settings, concurrency=1, queues="default")
    try:
        client, location = upload(rt, data)
        wait_for("under way", lambda: the_job(rt).processed >= 200, worker)
        worker.kill()  # SIGKILL, the worker and its pool process
    finally:
        worker.stop()
    stuck = the_job(rt)
    print(f"killed at {stuck.processed} of {stuck.total}")
    assert stuck.status is ImportStatus.RUNNING and 0 < stuck.processed < stuck.total
    assert stuck.lease_until is not None
    # The page shows how far it came, and goes on asking.
    live = client.get(location, headers={"HX-Request": "true"})  # type: ignore[attr-defined]
    assert figures(live.text) == ("در حال درون‌ریزی", persian_digits(
        f"{stuck.processed} از {stuck.total} نشانی خوانده شد ({100 * stuck.processed / stuck.total:.0f}٪)"))
    assert live.status_code == 200 and "rejected-report" not in live.text  # htmx keeps asking

    replacement = start_worker(rt.settings, concurrency=1, queues="default", name="replacement")
    try:
        while utcnow() <= stuck.lease_until:  # nobody takes the job up while its lease holds
            time.sleep(0.1)
        assert imports.sweep(rt, utcnow()).rung == [stuck.id]  # as beat does every minute
        wait_for("resumed and done", lambda: the_job(rt).finished, replacement)
    finally:
        replacement.stop()
    done = the_job(rt)
    assert done.status is ImportStatus.DONE and done.attempts == 2
    page = client.get(location).text  # type: ignore[attr-defined]
    assert figures(page)[0] == "تمام‌شده" and 'id="rejected-report"' in page
    assert (done.processed, done.added, done.rejected) == (done.total, valid + 2, bad)
    with rt.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Subscriber)) == valid + 2
        lines = list(db.scalars(select(ImportRejection.line).where(ImportRejection.job_id == done.id)))
        assert len(lines) == len(set(lines)) == bad  # each rejected line reported once
