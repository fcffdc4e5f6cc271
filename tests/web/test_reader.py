"""Subscribing over HTTP (FastAPI TestClient) on PostgreSQL and SQLite: one answer for all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.clock import utcnow
from service.runtime import Runtime
from service.subscribers.emails import owed_confirmation_ids
from service.subscribers.models import Status
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.subscribers.factories import find, make, subscriber_count
from tests.subscribers.rings import rung
from tests.web.headers import csp_directives

FORM = "application/x-www-form-urlencoded"
CHECK_INBOX = "یک قدم مانده است"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_subscribe_page_is_a_persian_rtl_form_with_a_hidden_honeypot(client: TestClient) -> None:
    for path in ("/", "/subscribe"):
        response = client.get(path)
        assert response.status_code == 200
        assert '<html lang="fa" dir="rtl">' in response.text
        assert 'name="email"' in response.text and 'name="website"' in response.text
        assert 'action="http://chapar.test/subscribe"' in response.text
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


def test_the_embeddable_form_may_be_framed_by_the_news_site(client: TestClient) -> None:
    response = client.get("/embed")
    assert response.status_code == 200
    assert "عضو خبرنامه" in response.text and 'value="embed"' in response.text
    assert "x-frame-options" not in response.headers
    assert csp_directives(response.headers)["frame-ancestors"] == "*"


def test_the_embedded_forms_answers_may_show_in_the_news_sites_frame(client: TestClient) -> None:
    framed = client.post("/subscribe", data={"email": "e@example.com", "source": "embed"})
    assert framed.status_code == 200 and CHECK_INBOX in framed.text
    assert "x-frame-options" not in framed.headers
    assert csp_directives(framed.headers)["frame-ancestors"] == "*"
    typo = client.post("/subscribe", data={"email": "e@example", "source": "embed"})
    assert typo.status_code == 422 and 'value="embed"' in typo.text
    assert "x-frame-options" not in typo.headers
    own_page = client.post("/subscribe", data={"email": "f@example.com", "source": "subscribe-page"})
    assert own_page.headers["x-frame-options"] == "DENY"
    assert csp_directives(own_page.headers)["frame-ancestors"] == "'none'"


def test_form_subscribe_records_consent_and_rings_once(runtime: Runtime, client: TestClient) -> None:
    response = client.post("/subscribe", data={"email": "  Reader@Example.COM ",
                                               "source": "subscribe-page"},
                           headers={"user-agent": "Mozilla/5.0 (Android)"})
    assert response.status_code == 200 and CHECK_INBOX in response.text
    subscriber = find(runtime, "reader@example.com")
    assert subscriber is not None and subscriber.status is Status.PENDING
    assert subscriber.consent_source == "web:subscribe-page"
    assert subscriber.consent_ip == "testclient"
    assert subscriber.consent_user_agent == "Mozilla/5.0 (Android)"
    assert subscriber.confirmation_requested_at is not None
    assert rung(runtime.settings) == [[subscriber.id]]


def test_json_subscribe_answers_json(runtime: Runtime, client: TestClient) -> None:
    response = client.post("/subscribe", json={"email": "api@example.com"})
    assert response.status_code == 202
    assert response.json()["ok"] is True
    subscriber = find(runtime, "api@example.com")
    assert subscriber is not None and subscriber.consent_source == "web:api"


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_the_answer_does_not_say_who_subscribes(runtime: Runtime, client: TestClient,
                                                as_json: bool) -> None:
    make(runtime, "pending@example.com", Status.PENDING)
    make(runtime, "confirmed@example.com", Status.CONFIRMED)
    make(runtime, "left@example.com", Status.UNSUBSCRIBED)
    answers = []
    for email in ("new@example.com", "pending@example.com", "confirmed@example.com",
                  "left@example.com"):
        if as_json:
            response = client.post("/subscribe", json={"email": email})
        else:
            response = client.post("/subscribe", data={"email": email, "source": "x"})
        headers = {k: v for k, v in response.headers.items() if k not in ("date",)}
        answers.append((response.status_code, response.content, headers))
    assert all(answer == answers[0] for answer in answers), answers
    # ...and yet each got what it should: the confirmed stays confirmed, the others owe mail.
    confirmed = find(runtime, "confirmed@example.com")
    left = find(runtime, "left@example.com")
    assert confirmed is not None and confirmed.status is Status.CONFIRMED
    assert left is not None and left.status is Status.PENDING


def test_a_filled_honeypot_gets_the_same_page_and_nothing_happens(runtime: Runtime,
                                                                  client: TestClient) -> None:
    honest = client.post("/subscribe", data={"email": "a@example.com", "source": "s"})
    bot = client.post("/subscribe", data={"email": "b@example.com", "source": "s",
                                          "website": "http://spam.example"})
    assert (bot.status_code, bot.text) == (honest.status_code, honest.text)
    assert find(runtime, "b@example.com") is None
    assert len(rung(runtime.settings)) == 1


@pytest.mark.parametrize("raw", [
    "victim@example.com\r\nBcc: everyone@example.com",
    "victim@example.com\nSubject: hi",
    "victim@example.com%0d%0aBcc:x@example.com",
    "a" * 250 + "@example.com",
    "x@" + "d" * 64 + ".example.com",
    "reader@exa\u200bmple.com",  # zero-width space
    "reader\u202e@example.com",  # right-to-left override
    "reader@example.com\x00",
    "علی@example.com",  # non-ASCII local part without SMTPUTF8
    "not-an-address",
    "",
])
def test_malformed_and_hostile_addresses_get_a_clear_error(runtime: Runtime, client: TestClient,
                                                           raw: str) -> None:
    page = client.post("/subscribe", data={"email": raw})
    assert page.status_code == 422
    assert re.search(r'class="error" id="email-error" role="alert">[^<]*[\u0600-\u06ff]', page.text)
    api = client.post("/subscribe", json={"email": raw})
    assert api.status_code == 422 and api.json()["field"] == "email"
    assert subscriber_count(runtime) == 0 and rung(runtime.settings) == []


def test_the_typed_address_comes_back_escaped_on_one_line(client: TestClient) -> None:
    page = client.post("/subscribe", data={"email": '"><script>alert(1)</script>\r\nx'})
    assert page.status_code == 422
    assert "<script>alert(1)" not in page.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt; x"' in page.text
    assert 'aria-invalid="true"' in page.text


def test_an_internationalised_domain_is_stored_once_in_ascii(runtime: Runtime,
                                                             client: TestClient) -> None:
    client.post("/subscribe", data={"email": "Ali@مثال.ایران"})
    client.post("/subscribe", data={"email": "ali@xn--mgbh0fb.xn--mgba3a4f16a"})
    assert find(runtime, "ali@xn--mgbh0fb.xn--mgba3a4f16a") is not None
    assert subscriber_count(runtime) == 1


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"email": ', "application/json", 400),
    (b"\xff\xfe{}", "application/json", 400),
    (b'["a@example.com"]', "application/json", 400),
    (b"[" * 20000 + b"]" * 20000, "application/json", 400),
    (b"email=a@example.com", "text/plain", 415),
    (b"<email>a@example.com</email>", "application/xml", 415),
    (b"--b\r\nContent-Disposition: form-data; name=\"email\"; filename=\"x.txt\"\r\n\r\n"
     b"a@example.com\r\n--b--\r\n", "multipart/form-data; boundary=b", 400),
    (b"--b\r\nbroken", "multipart/form-data", 400),
    (b"&".join(b"f%d=1" % i for i in range(50)), FORM, 400),
])
def test_bad_bodies_get_an_error_never_a_500(runtime: Runtime, client: TestClient, body: bytes,
                                             content_type: str, status: int) -> None:
    response = client.post("/subscribe", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    if content_type == "application/json":
        assert response.json()["error"] in ("invalid_json", "bad_request")
    else:
        assert '<html lang="fa" dir="rtl">' in response.text
    assert subscriber_count(runtime) == 0


def test_unknown_paths_and_methods_get_the_persian_error_page(client: TestClient) -> None:
    assert client.get("/nowhere").status_code == 404
    response = client.put("/subscribe")
    assert response.status_code == 405 and "روش نادرست" in response.text
    assert client.get("/nowhere", headers={"accept": "application/json"}).json()["error"] == "not_found"


def test_a_broker_outage_still_answers_and_leaves_the_email_owed(database_url: str,
                                                                 tmp_path: Path) -> None:
    """Redis is down: the ring fails (and the rate limits, which live there too, let it by)."""
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                             broker_url="redis://127.0.0.1:1/0",
                                             subscribe_rate_per_client="100/minute"))
    truncate_all(rt)
    try:
        client = TestClient(create_app(rt), raise_server_exceptions=False)
        response = client.post("/subscribe", data={"email": "outage@example.com"})
        assert response.status_code == 200 and CHECK_INBOX in response.text
        subscriber = find(rt, "outage@example.com")
        assert subscriber is not None and subscriber.confirmation_requested_at is not None
        with rt.sessions() as session:
            later = utcnow() + timedelta(minutes=10)
            assert owed_confirmation_ids(session, later) == [subscriber.id]
    finally:
        truncate_all(rt)
        rt.close()
