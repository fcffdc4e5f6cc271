"""While PostgreSQL cannot be reached: 503 pages with Retry-After, nothing half-written, and the
same app working again once it is back."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers.models import Status
from service.tokens import Purpose
from service.web.app import create_app
from service.web.pages import RETRY_AFTER_SECONDS
from tests.conftest import make_settings
from tests.staff.factories import staff_account
from tests.subscribers.factories import confirm_token, find, make, subscriber_count
from tests.subscribers.rings import rung
from tests.support.network import free_port
from tests.support.outage import database_closed
from tests.web.desk.support import desk_client, sign_in

FORM = {"email": "during@example.com", "source": "subscribe-page"}
API = {"Authorization": "Bearer test-api-key"}
UNAVAILABLE = "سرویس در دسترس نیست"


@pytest.fixture
def rt(pg_runtime: Runtime) -> Runtime:
    return pg_runtime  # an outage is a PostgreSQL one: its connections are the ones cut


def assert_unavailable_page(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="fa" dir="rtl">' in response.text and UNAVAILABLE in response.text
    assert "Traceback" not in response.text and "psycopg" not in response.text


def assert_unavailable_json(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"] == "unavailable"


def reader_requests(rt: Runtime, subscriber_id: int) -> list[tuple[str, str]]:
    """(method, path) of each reader page that reads or writes the database."""
    pref = rt.tokens.lasting(Purpose.PREFERENCES, subscriber_id)
    unsub = rt.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber_id)
    return [("POST", f"/confirm/{confirm_token(rt, subscriber_id)}"),
            ("GET", f"/preferences/{pref}"), ("POST", f"/preferences/{pref}/resubscribe"),
            ("POST", f"/unsubscribe/{unsub}?i=1"),  # the RFC 8058 one-click target
            ("GET", "/archive"), ("GET", "/archive/1")]


def test_pages_answer_503_while_the_database_is_down_and_work_again_after(
        rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    pending = make(rt, "reader@example.com", Status.PENDING)
    with unit_of_work(rt.sessions) as session:
        staff_account(session, "ops@example.com", "ops")
    requests = reader_requests(rt, pending)
    app = create_app(rt)
    with TestClient(app, raise_server_exceptions=False) as reader, desk_client(rt, app) as desk:
        assert sign_in(desk, "ops@example.com").status_code == 303
        assert desk.get("/desk/ops").status_code == 200

        with caplog.at_level(logging.WARNING), database_closed(rt.settings.effective_database_url):
            assert_unavailable_page(reader.post("/subscribe", data=FORM))
            assert_unavailable_json(reader.post("/subscribe", json={"email": FORM["email"]}))
            for method, path in requests:
                assert_unavailable_page(reader.request(method, path))
            assert_unavailable_page(desk.get("/desk/ops"))
            assert_unavailable_page(desk.get("/desk/"))
            assert_unavailable_json(reader.get("/api/v1/issues/1/stats", headers=API))
            ready = reader.get("/readyz")
            assert ready.status_code == 503 and ready.json()["problems"]["database"] == "unavailable"
            assert ready.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert reader.get("/healthz").status_code == 200  # the process itself is alive
            assert reader.get("/subscribe").status_code == 200  # the form needs no database

        # One warning for the outage, not a traceback per request.
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"

        # The same app, the same pool: pages work again without a restart.
        assert reader.post("/subscribe", data=FORM).status_code == 200
        assert desk.get("/desk/ops").status_code == 200
        unsub = rt.tokens.lasting(Purpose.UNSUBSCRIBE, pending)
        assert reader.post(f"/unsubscribe/{unsub}").status_code == 200
        assert reader.get("/readyz").json().get("problems", {}).get("database") is None
    assert rt.database_outages.down_since is None
    assert [o.where for o in rt.database_outages.take_ended()] == [
        f"127.0.0.1:{rt.engine.url.port}"]


def test_a_subscribe_during_the_outage_leaves_no_row_and_no_queued_email(rt: Runtime) -> None:
    with TestClient(create_app(rt), raise_server_exceptions=False) as client, \
            database_closed(rt.settings.effective_database_url):
        assert client.post("/subscribe", data=FORM).status_code == 503
    assert find(rt, FORM["email"]) is None
    assert subscriber_count(rt) == 0
    assert rung(rt.settings) == []  # no confirmation was enqueued


def test_nothing_listens_at_the_database_address_and_redis_is_down_too(tmp_path: Path) -> None:
    """Connection refused for both: the rate limits let the request through (fail open), the
    database part answers 503."""
    closed = free_port()
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=f"postgresql+psycopg://chapar:secretpw@127.0.0.1:{closed}/chapar",
        redis_url=f"redis://127.0.0.1:{closed}/0"))
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            page = client.post("/subscribe", data=FORM)
            api = client.post("/subscribe", json={"email": FORM["email"]})
            login = client.get("/desk/login")  # the sign-in form itself needs neither
    finally:
        rt.close()
    assert_unavailable_page(page)
    assert_unavailable_json(api)
    assert "secretpw" not in page.text and str(closed) not in page.text
    assert login.status_code == 200
