"""/healthz answers while the process lives; /readyz only when the database and broker do."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.runtime import Runtime
from service.web.app import create_app
from tests.conftest import make_settings
from tests.support.network import free_port


def client_for(rt: Runtime) -> TestClient:
    return TestClient(create_app(rt))


def test_ready_when_database_and_broker_answer(postgresql_url: str, redis_db: str,
                                               tmp_path: Path) -> None:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=postgresql_url,
                                             broker_url=redis_db))
    try:
        with client_for(rt) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            response = client.get("/readyz")
        assert response.status_code == 200 and response.json() == {"status": "ready"}
    finally:
        rt.close()


def test_not_ready_names_what_is_down_without_internal_details(postgresql_url: str,
                                                                tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    rt = Runtime.from_settings(make_settings(
        tmp_path, database_url=f"postgresql+psycopg://chapar_probe:secretpw@127.0.0.1:{closed}/x",
        broker_url=f"redis://127.0.0.1:{closed}/0"))
    try:
        with client_for(rt) as client:
            assert client.get("/healthz").status_code == 200  # the process itself is fine
            response = client.get("/readyz")
    finally:
        rt.close()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable",
                               "problems": {"database": "unavailable", "broker": "unavailable"}}
    assert "chapar_probe" not in response.text and str(closed) not in response.text
