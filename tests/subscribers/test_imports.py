"""Imports from the desk, without a broker: the upload's checks, the job's run, resume and sweep."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from service.db import unit_of_work
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.models import AuditEntry
from service.subscribers import imports, store
from service.subscribers.importer import read_addresses
from service.subscribers.imports import MAX_ATTEMPTS, UploadRefused, check_upload
from service.subscribers.models import ImportJob, ImportStatus, Status, Subscriber

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
ACTOR = Actor(None, "editor@example.com", "127.0.0.1")
CSV = ("name,email\n"
       "Sara,sara@example.com\n"  # 2
       "Bad,not-an-address\n"  # 3
       "Reza,REZA@Example.com\n"  # 4
       "Left,left@example.com\n"  # 5
       "Gone,gone@example.com\n"  # 6
       "Empty,\n")  # 7


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def queue(rt: Runtime, text: str, *, import_as: Status = Status.CONFIRMED, source: str = "") -> int:
    upload = check_upload("readers.csv", text.encode(), rt.settings.import_max_bytes)
    with unit_of_work(rt.sessions) as session:
        return imports.start_import(session, ACTOR, upload, source=source, import_as=import_as,
                                    now=NOW).id


def job(rt: Runtime, job_id: int) -> ImportJob:
    with rt.sessions() as session:
        found = session.get(ImportJob, job_id)
        assert found is not None
        _ = found.content  # load the deferred column while the session is open
        return found


def count_subscribers(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


@pytest.fixture
def suppressed(runtime: Runtime) -> Iterator[None]:
    """left@ unsubscribed, gone@ erased: neither may come back through an import."""
    consent = store.Consent("web:test")
    with unit_of_work(runtime.sessions) as session:
        left = store.subscribe(session, "left@example.com", consent, NOW).subscriber_id
        store.unsubscribe(session, left, NOW, "test")
        gone = store.subscribe(session, "gone@example.com", consent, NOW).subscriber_id
        store.erase(session, gone, NOW)
    yield


@pytest.mark.parametrize(("name", "data", "says"), [
    ("readers.csv", b"", "خالی"),
    ("readers.xlsx", b"PK\x03\x04 zipped sheets", "CSV نیست"),
    ("readers.csv", b"email\nsara@example.com\n\x00\x01", "CSV نیست"),
    ("readers.csv", "email\nسارا@example.com\n".encode("utf-16"), "CSV نیست"),
    ("readers.csv", "email\nsara@example.com,تهران\n".encode("cp1256"), "UTF-8"),
    ("readers.csv", b"name,phone\nSara,0912\n", "ستون ایمیل"),
    ("readers.csv", b"email\n", "هیچ نشانی"),
    ("readers.csv", b"email\n" + b"a@example.com\n" * 1000 + b"\x00\n", "CSV نیست"),  # NUL far in
    ("readers.csv", b"email\n" + b"a@example.com\n" * 5000, "بزرگ‌تر از ۶۴ کیلوبایت"),
])
def test_a_file_that_cannot_be_imported_is_refused_with_a_reason(name: str, data: bytes, says: str) -> None:
    with pytest.raises(UploadRefused) as refused:
        check_upload(name, data, max_bytes=64 * 1024)
    assert says in refused.value.message
    assert str(refused.value)  # and in English


def test_a_checked_upload_counts_its_addresses_and_keeps_only_the_files_name() -> None:
    upload = check_upload("C:\\Users\\me\\readers.csv", ("\ufeff" + CSV).encode(), 10_000)
    assert upload.filename == "readers.csv" and upload.total == 6


def test_an_import_job_adds_readers_reports_rejected_lines_and_is_audited(
        runtime: Runtime, suppressed: None) -> None:
    job_id = queue(runtime, CSV, source="import:print-signups")
    queued = job(runtime, job_id)
    assert queued.status is ImportStatus.QUEUED and queued.total == 6 and queued.processed == 0
    with runtime.sessions() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "subscribers.import"))
        assert entry.target == f"import:{job_id}" and entry.actor == "editor@example.com"
        assert "addresses=6" in entry.detail and "source=import:print-signups" in entry.detail

    imports.run_import(runtime, job_id, Clock())
    done = job(runtime, job_id)
    assert done.status is ImportStatus.DONE and done.processed == 6 and done.finished_at == NOW
    # left@ is on the list, unsubscribed, and stays so; gone@ was erased: skipped
    assert (done.added, done.already_present, done.suppressed, done.rejected) == (2, 1, 1, 2)
    assert done.content is None  # the file names readers: it goes once the import has ended
    with runtime.sessions() as session:
        assert [(r.line, r.value, r.code) for r in imports.rejected_lines(session, job_id)] == [
            (3, "not-an-address", "invalid"), (7, "", "empty")]
        sara = store.find_by_email(session, "sara@example.com")
        assert sara is not None and sara.status is Status.CONFIRMED
        assert sara.consent_source == "import:print-signups"
        left = store.find_by_email(session, "left@example.com")
        assert left is not None and left.status is Status.UNSUBSCRIBED
        assert store.find_by_email(session, "gone@example.com") is None
    assert count_subscribers(runtime) == 3  # sara, reza, and left as she was

    imports.run_import(runtime, job_id, Clock())  # the same message delivered twice: nothing
    assert job(runtime, job_id).added == 2 and count_subscribers(runtime) == 3


def test_the_same_file_imported_twice_adds_nothing_the_second_time(runtime: Runtime) -> None:
    first, second = queue(runtime, CSV), queue(runtime, CSV, import_as=Status.PENDING)
    imports.run_import(runtime, first, Clock())
    imports.run_import(runtime, second, Clock())
    again = job(runtime, second)
    assert job(runtime, first).added == 4
    assert (again.added, again.already_present, again.rejected) == (0, 4, 2)
    with runtime.sessions() as session:
        sara = store.find_by_email(session, "sara@example.com")
        assert sara is not None and sara.status is Status.CONFIRMED  # not turned pending


def test_a_job_abandoned_mid_file_is_resumed_from_its_committed_position(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker died after its first batch: the next one adds the rest, counting nothing twice."""
    monkeypatch.setattr(runtime.settings, "import_batch_size", 2)
    job_id = queue(runtime, CSV)
    clock = Clock()
    real_batches = imports.import_batches

    def dies_after_one_batch(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield next(real_batches(*args, **kwargs))
        raise KeyboardInterrupt  # as abrupt as a kill: nothing after it runs

    with monkeypatch.context() as patched:
        patched.setattr(imports, "import_batches", dies_after_one_batch)
        with pytest.raises(KeyboardInterrupt):
            imports.run_import(runtime, job_id, clock)
    stuck = job(runtime, job_id)
    assert stuck.status is ImportStatus.RUNNING and stuck.processed == 2 and stuck.added == 1
    assert stuck.lease_until == NOW + timedelta(seconds=runtime.settings.import_lease_seconds)

    with unit_of_work(runtime.sessions) as session:  # within the lease: nobody takes it
        assert imports.sweep_due(session, clock()).rung == []
    imports.run_import(runtime, job_id, clock)
    assert job(runtime, job_id).processed == 2  # a second ring while it is held does nothing

    clock.now = NOW + timedelta(seconds=runtime.settings.import_lease_seconds + 1)
    with unit_of_work(runtime.sessions) as session:
        assert imports.sweep_due(session, clock()).rung == [job_id]
    imports.run_import(runtime, job_id, clock)
    done = job(runtime, job_id)
    assert done.status is ImportStatus.DONE and done.attempts == 2
    assert (done.processed, done.added, done.rejected) == (6, 4, 2)
    assert count_subscribers(runtime) == 4
    with runtime.sessions() as session:
        assert [r.line for r in imports.rejected_lines(session, job_id)] == [3, 7]


def test_a_job_every_worker_dies_on_is_failed_with_a_reason_not_left_running(runtime: Runtime) -> None:
    job_id = queue(runtime, CSV)
    with unit_of_work(runtime.sessions) as session:
        session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
            status=ImportStatus.RUNNING, attempts=MAX_ATTEMPTS, lease_until=NOW, processed=2))
    with unit_of_work(runtime.sessions) as session:
        assert imports.sweep_due(session, NOW).failed == []  # the lease has not run out
    with unit_of_work(runtime.sessions) as session:
        result = imports.sweep_due(session, NOW + timedelta(seconds=1))
    assert result.failed == [job_id] and result.rung == []
    failed = job(runtime, job_id)
    assert failed.status is ImportStatus.FAILED and failed.content is None
    assert failed.error is not None
    assert "دوباره بفرستید" in failed.error and "Upload the file again" in failed.error
    imports.run_import(runtime, job_id, Clock(NOW + timedelta(hours=1)))
    assert job(runtime, job_id).status is ImportStatus.FAILED


def test_a_worker_whose_job_was_taken_over_commits_nothing_more(runtime: Runtime) -> None:
    """A slow worker's lease ran out and another took the job: the slow one's batch is rolled back."""
    job_id = queue(runtime, CSV)
    lease = timedelta(seconds=runtime.settings.import_lease_seconds)
    calls = 0

    def slow_clock() -> datetime:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first batch starts; meanwhile the lease ran out and another worker came
            with unit_of_work(runtime.sessions) as session:
                assert imports.claim(session, job_id, NOW + lease * 2, lease) == 2
        return NOW

    imports.run_import(runtime, job_id, slow_clock)
    taken = job(runtime, job_id)
    assert taken.status is ImportStatus.RUNNING and taken.attempts == 2
    assert taken.processed == 0 and count_subscribers(runtime) == 0


def test_a_queued_job_whose_ring_was_lost_is_rung_again(runtime: Runtime) -> None:
    job_id = queue(runtime, CSV)
    with unit_of_work(runtime.sessions) as session:
        assert imports.sweep_due(session, NOW + timedelta(seconds=30)).rung == []
        assert imports.sweep_due(session, NOW + imports.RING_AGAIN_AFTER).rung == [job_id]


def test_rows_are_read_the_same_way_the_command_line_reads_them() -> None:
    assert list(read_addresses(io.StringIO(CSV, newline="")))[:2] == [(2, "sara@example.com"),
                                                                       (3, "not-an-address")]
