"""POST /api/v1/bounces over HTTP: the API key, the size limit, and what a report does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.bounces.verp import VerpSigner
from service.delivery.models import Bounce
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber
from service.web.app import create_app
from tests.bounces.factories import add_subscriber, sent_delivery
from tests.bounces.messages import GARBAGE, arf_complaint, hard_bounce, soft_bounce

URL = "/api/v1/bounces"
KEY = "test-api-key"  # tests/conftest.make_settings
RFC822 = {"Content-Type": "message/rfc822"}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def reader_with_delivery(rt: Runtime, email: str) -> tuple[int, str]:
    with rt.sessions.begin() as session:
        reader = add_subscriber(session, email)
        delivery = sent_delivery(session, reader)
        verp = VerpSigner(rt.settings.secret_key).address(delivery.id, rt.settings.verp_domain)
        return reader.id, verp


def status_of(rt: Runtime, subscriber_id: int) -> Status:
    with rt.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return subscriber.status


def bounce_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return len(session.scalars(select(Bounce.id)).all())


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"X-API-Key": "test-api-ke"},
    {"Authorization": f"Basic {KEY}"},
    {"Authorization": "Bearer "},
])
def test_without_the_right_key_it_is_401_and_nothing_happens(
        client: TestClient, runtime: Runtime, headers: dict[str, str]) -> None:
    subscriber_id, verp = reader_with_delivery(runtime, "gone@example.test")
    response = client.post(URL, content=hard_bounce(verp, "gone@example.test"),
                           headers=RFC822 | headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert status_of(runtime, subscriber_id) is Status.CONFIRMED
    assert bounce_count(runtime) == 0


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}])
def test_a_hard_bounce_with_the_key_marks_the_subscriber_bounced(
        client: TestClient, runtime: Runtime, headers: dict[str, str]) -> None:
    subscriber_id, verp = reader_with_delivery(runtime, "gone@example.test")
    response = client.post(URL, content=hard_bounce(verp, "gone@example.test"),
                           headers=RFC822 | headers)
    assert response.status_code == 202
    body = response.json()
    assert (body["outcome"], body["subscriber_id"], body["subscriber_status"], body["stored"]) == (
        "hard", subscriber_id, "bounced", 1)
    assert status_of(runtime, subscriber_id) is Status.BOUNCED


def test_soft_bounce_complaint_garbage_and_unknown_token(client: TestClient,
                                                         runtime: Runtime) -> None:
    auth = RFC822 | {"X-API-Key": KEY}
    full_id, full_verp = reader_with_delivery(runtime, "full@example.test")
    annoyed_id, annoyed_verp = reader_with_delivery(runtime, "annoyed@example.test")
    unknown = VerpSigner("another secret").address(1, "chapar.test")

    answers = [client.post(URL, content=raw, headers=auth).json()["outcome"] for raw in (
        soft_bounce(full_verp, "full@example.test"),
        arf_complaint(annoyed_verp, "annoyed@example.test"),
        GARBAGE,
        hard_bounce(unknown, "full@example.test"),
    )]

    assert answers == ["soft", "complaint", "not_a_report", "unmatched"]
    assert status_of(runtime, full_id) is Status.CONFIRMED
    assert status_of(runtime, annoyed_id) is Status.COMPLAINED
    assert bounce_count(runtime) == 3


def test_an_empty_body_is_400(client: TestClient) -> None:
    response = client.post(URL, content=b"  \r\n", headers={"X-API-Key": KEY})
    assert response.status_code == 400


def test_an_oversized_report_is_refused_with_413(client: TestClient, runtime: Runtime) -> None:
    raw = hard_bounce("bounces+1-x@chapar.test", "a@example.test")
    huge = raw + b"x" * (runtime.settings.api_max_request_bytes + 1)
    response = client.post(URL, content=huge, headers=RFC822 | {"X-API-Key": KEY})
    assert response.status_code == 413
    assert bounce_count(runtime) == 0


def test_the_endpoint_is_off_without_a_configured_key(client: TestClient,
                                                      runtime: Runtime) -> None:
    runtime.settings.api_key = ""
    response = client.post(URL, content=b"x", headers={"X-API-Key": ""})
    assert response.status_code == 404


def test_a_bounce_to_the_senders_own_return_path_finds_its_row(client: TestClient,
                                                               runtime: Runtime) -> None:
    """The return path the delivery engine puts on a message, bounced back, marks its reader."""
    from service.delivery.sender import DeliveryAgent

    with runtime.sessions.begin() as session:
        reader = add_subscriber(session, "moved-away@example.test")
        delivery = sent_delivery(session, reader)
        ids = (reader.id, delivery.id, delivery.issue_id)
    message = DeliveryAgent(runtime).message_for(ids[2])
    assert message is not None
    return_path = message.envelope_sender(ids[1])
    assert return_path.endswith("@" + runtime.settings.verp_domain)

    # Some MTAs upper-case the local part on the way back.
    local, _, domain = return_path.rpartition("@")
    raw = hard_bounce(f"{local.upper()}@{domain}", "moved-away@example.test")
    response = client.post(URL, content=raw, headers=RFC822 | {"X-API-Key": KEY})

    assert response.status_code == 202
    assert (response.json()["delivery_id"], response.json()["subscriber_id"]) == ids[1::-1]
    assert status_of(runtime, ids[0]) is Status.BOUNCED
