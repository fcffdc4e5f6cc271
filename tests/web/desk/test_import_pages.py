"""The desk's import pages over HTTP: the upload's errors, the job page, the report, the audit."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from service.db import unit_of_work
from service.runtime import Runtime
from service.staff.models import AuditEntry
from service.subscribers import imports
from service.subscribers.models import ImportJob, ImportStatus
from tests.staff.factories import staff_account
from tests.web.desk.support import csrf_from, desk_client, sign_in

CSV = "email,name\nsara@example.com,Sara\nnot-an-address,Bad\nreza@example.com,Reza\n"


@pytest.fixture
def rings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...]]]:
    """The doorbell's rings, kept instead of sent (no broker here; a real worker is tested elsewhere)."""
    rung: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(Runtime, "ring", lambda self, task, *args: rung.append((task, args)))
    return rung


def signed_in(rt: Runtime, rings: list[tuple[str, tuple[int, ...]]]) -> object:
    with unit_of_work(rt.sessions) as db:
        staff_account(db, "boss@example.com", "admin")
    client = desk_client(rt)
    assert sign_in(client, "boss@example.com").status_code == 303
    client.rings = rings  # type: ignore[attr-defined]
    return client


@pytest.fixture
def admin(runtime: Runtime, rings: list[tuple[str, tuple[int, ...]]]) -> object:
    return signed_in(runtime, rings)


def send(client: object, name: str, data: bytes, **fields: str) -> object:
    page = client.get("/desk/readers/import")  # type: ignore[attr-defined]
    form = {"csrf_token": csrf_from(page), "source": "", "import_as": "confirmed", "consent": "yes", **fields}
    return client.post("/desk/readers/import", data=form,  # type: ignore[attr-defined]
                       files={"file": (name, data, "text/csv")})


def test_an_upload_queues_a_job_rings_a_worker_and_is_audited(runtime: Runtime, admin: object) -> None:
    response = send(admin, "readers.csv", CSV.encode(), source="import:print-1405")
    assert response.status_code == 303  # type: ignore[attr-defined]
    location = response.headers["location"]  # type: ignore[attr-defined]
    job_id = int(location.rsplit("/", 1)[1])
    assert admin.rings == [(imports.TASK, (job_id,))]  # type: ignore[attr-defined]
    with runtime.sessions() as db:
        job = db.get(ImportJob, job_id)
        assert job is not None and job.status is ImportStatus.QUEUED and job.total == 3
        assert job.actor == "boss@example.com" and job.source == "import:print-1405"
        [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "subscribers.import"))
        assert entry.actor == "boss@example.com" and entry.target == f"import:{job_id}"
    page = admin.get(location)  # type: ignore[attr-defined]
    assert page.status_code == 200 and "در صف" in page.text
    assert 'hx-trigger="every 2s"' in page.text and "خوانده‌شده ساعت" in page.text
    assert admin.get(location, headers={"HX-Request": "true"}).status_code == 200  # type: ignore[attr-defined]
    assert "۰ از ۳ نشانی" in page.text
    listing = admin.get("/desk/readers/import")  # type: ignore[attr-defined]
    assert f'href="/desk/readers/imports/{job_id}"' in listing.text and "readers.csv" in listing.text

    imports.run_import(runtime, job_id, lambda: job.created_at)
    live = admin.get(location, headers={"HX-Request": "true"})  # type: ignore[attr-defined]
    assert "<html" not in live.text and "تمام‌شده" in live.text
    assert live.status_code == 286  # finished: htmx stops asking
    assert "۳ از ۳ نشانی" in live.text and 'id="rejected-report"' in live.text

    report = admin.get(f"{location}/rejected.csv")  # type: ignore[attr-defined]
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert "attachment" in report.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert rows == [["line", "value", "reason_fa", "reason_en"],
                    ["3", "not-an-address", "این نشانی ایمیل درست نیست.", "not a valid email address"]]


def test_the_source_defaults_to_the_files_name(runtime: Runtime, admin: object) -> None:
    response = send(admin, "old-list.csv", CSV.encode(), import_as="pending")
    assert response.status_code == 303  # type: ignore[attr-defined]
    with runtime.sessions() as db:
        [job] = db.scalars(select(ImportJob))
        assert job.source == "import:old-list.csv" and job.import_as.value == "pending"


@pytest.mark.parametrize(("name", "data", "fields", "says"), [
    ("readers.csv", b"", {}, "پرونده خالی است"),
    ("readers.xlsx", b"PK\x03\x04\x14\x00", {}, "این پرونده CSV نیست"),
    ("readers.csv", "email\nsara@example.com,تهران\n".encode("cp1256"), {}, "UTF-8 نیست"),
    ("readers.csv", b"name,phone\nSara,0912\n", {}, "ستون ایمیل پیدا نشد"),
    ("readers.csv", CSV.encode(), {"consent": ""}, "رضایت داده‌اند"),
    ("readers.csv", CSV.encode(), {"import_as": "unsubscribed"}, "وضعیت خوانندگان تازه"),
])
def test_a_bad_upload_is_refused_on_the_form_with_a_persian_reason(
        runtime: Runtime, admin: object, name: str, data: bytes, fields: dict[str, str], says: str) -> None:
    response = send(admin, name, data, **fields)
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert says in response.text and 'role="alert"' in response.text  # type: ignore[attr-defined]
    assert admin.rings == []  # type: ignore[attr-defined]
    with runtime.sessions() as db:
        assert db.scalars(select(ImportJob)).first() is None


def test_a_form_without_a_file_is_refused(admin: object) -> None:
    page = admin.get("/desk/readers/import")  # type: ignore[attr-defined]
    response = admin.post("/desk/readers/import", data={"csrf_token": csrf_from(page)})  # type: ignore[attr-defined]
    assert response.status_code == 422 and "یک پروندهٔ CSV انتخاب کنید" in response.text


def test_a_file_over_the_limit_is_refused_with_the_limit_named(
        runtime: Runtime, rings: list[tuple[str, tuple[int, ...]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.settings, "import_max_bytes", 2048)
    admin = signed_in(runtime, rings)
    big = b"email\n" + b"someone@example.com\n" * 200  # 4 KB: over the file limit, under the request's
    response = send(admin, "readers.csv", big)
    assert response.status_code == 422 and "بزرگ‌تر از ۲ کیلوبایت" in response.text  # type: ignore[attr-defined]
    huge = b"email\n" + b"someone@example.com\n" * 20_000  # 400 KB: the request itself is refused
    response = send(admin, "readers.csv", huge)
    assert response.status_code == 413 and "بزرگ‌تر از ۲ کیلوبایت" in response.text  # type: ignore[attr-defined]


def test_without_the_csrf_token_nothing_is_queued(runtime: Runtime, admin: object) -> None:
    response = admin.post("/desk/readers/import", data={"import_as": "confirmed", "consent": "yes"},  # type: ignore[attr-defined]
                          files={"file": ("readers.csv", CSV.encode(), "text/csv")})
    assert response.status_code == 403
    with runtime.sessions() as db:
        assert db.scalars(select(ImportJob)).first() is None


def test_an_unknown_job_is_not_found(admin: object) -> None:
    assert admin.get("/desk/readers/imports/999").status_code == 404  # type: ignore[attr-defined]
    assert admin.get("/desk/readers/imports/999/rejected.csv").status_code == 404  # type: ignore[attr-defined]


def test_with_the_broker_away_the_job_is_kept_for_the_sweeper(runtime: Runtime, admin: object,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broker_down(self: Runtime, task: str, *args: int) -> None:
        raise ConnectionRefusedError("redis is away")

    monkeypatch.setattr(Runtime, "ring", broker_down)
    response = send(admin, "readers.csv", CSV.encode())
    assert response.status_code == 303  # type: ignore[attr-defined]
    with runtime.sessions() as db:
        [job] = db.scalars(select(ImportJob))
        assert job.status is ImportStatus.QUEUED
    with unit_of_work(runtime.sessions) as db:
        assert imports.sweep_due(db, job.created_at + imports.RING_AGAIN_AFTER).rung == [job.id]
