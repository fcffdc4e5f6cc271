"""Reader flows over HTTP (FastAPI TestClient) on PostgreSQL and SQLite."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.emails import owed_confirmation_ids
from service.subscribers.models import Status, Subscriber, SubscriberEvent
from service.tokens import Purpose
from service.web.app import create_app
from tests.conftest import make_settings, truncate_all
from tests.subscribers.rings import rung

FORM = "application/x-www-form-urlencoded"
CHECK_INBOX = "یک قدم مانده است"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def find(rt: Runtime, email: str) -> Subscriber | None:
    with rt.sessions() as session:
        return store.find_by_email(session, email)


def subscriber_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def make(rt: Runtime, email: str, status: Status) -> int:
    """A subscriber in the given state, made through the store as a reader would."""
    with unit_of_work(rt.sessions) as session:
        sid = store.subscribe(session, email, store.Consent("web:test"), utcnow()).subscriber_id
        if status in (Status.CONFIRMED, Status.UNSUBSCRIBED):
            store.confirm(session, sid, utcnow(), rt.settings.secret_key)
        if status is Status.UNSUBSCRIBED:
            store.unsubscribe(session, sid, utcnow(), "test")
    return sid


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
    assert response.headers["content-security-policy"] == "frame-ancestors *"


def test_the_embedded_forms_answers_may_show_in_the_news_sites_frame(client: TestClient) -> None:
    framed = client.post("/subscribe", data={"email": "e@example.com", "source": "embed"})
    assert framed.status_code == 200 and CHECK_INBOX in framed.text
    assert "x-frame-options" not in framed.headers
    assert framed.headers["content-security-policy"] == "frame-ancestors *"
    typo = client.post("/subscribe", data={"email": "e@example", "source": "embed"})
    assert typo.status_code == 422 and 'value="embed"' in typo.text
    assert "x-frame-options" not in typo.headers
    own_page = client.post("/subscribe", data={"email": "f@example.com", "source": "subscribe-page"})
    assert own_page.headers["x-frame-options"] == "DENY"


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


def confirm_url(rt: Runtime, sid: int) -> str:
    return f"/confirm/{rt.tokens.confirm(sid)}"


def test_get_confirm_shows_a_button_and_changes_nothing(runtime: Runtime, client: TestClient) -> None:
    sid = make(runtime, "scan@example.com", Status.PENDING)
    for _ in range(3):  # link scanners follow every GET, sometimes more than once
        response = client.get(confirm_url(runtime, sid))
        assert response.status_code == 200
        assert '<form method="post"' in response.text and "<button" in response.text
    subscriber = find(runtime, "scan@example.com")
    assert subscriber is not None and subscriber.status is Status.PENDING
    head = client.head(confirm_url(runtime, sid))
    assert head.status_code in (200, 405)
    subscriber = find(runtime, "scan@example.com")
    assert subscriber is not None and subscriber.status is Status.PENDING


def test_post_confirm_confirms_and_twice_is_harmless(runtime: Runtime, client: TestClient) -> None:
    sid = make(runtime, "yes@example.com", Status.PENDING)
    first = client.post(confirm_url(runtime, sid))
    second = client.post(confirm_url(runtime, sid))
    assert first.status_code == second.status_code == 200
    assert "عضویت شما تأیید شد" in first.text
    subscriber = find(runtime, "yes@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
    with runtime.sessions() as session:
        kinds = session.scalars(select(SubscriberEvent.kind).where(
            SubscriberEvent.subscriber_id == sid)).all()
    assert kinds == ["subscribe", "confirm"]
    api = client.post(confirm_url(runtime, sid), headers={"accept": "application/json"})
    assert api.json() == {"ok": True, "status": "confirmed"}


def test_an_old_confirm_link_does_not_undo_an_unsubscribe(runtime: Runtime,
                                                          client: TestClient) -> None:
    sid = make(runtime, "left@example.com", Status.UNSUBSCRIBED)
    response = client.post(confirm_url(runtime, sid))
    assert response.status_code == 200 and "قدیمی" in response.text
    subscriber = find(runtime, "left@example.com")
    assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED


def unsubscribe_url(rt: Runtime, sid: int) -> str:
    return f"/unsubscribe/{rt.tokens.lasting(Purpose.UNSUBSCRIBE, sid)}"


def test_get_unsubscribe_shows_a_button_and_changes_nothing(runtime: Runtime,
                                                            client: TestClient) -> None:
    sid = make(runtime, "stay@example.com", Status.CONFIRMED)
    response = client.get(unsubscribe_url(runtime, sid))
    assert response.status_code == 200 and "<button" in response.text
    subscriber = find(runtime, "stay@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED


def test_one_click_post_unsubscribes_with_no_cookie_and_offers_to_come_back(
    runtime: Runtime, client: TestClient
) -> None:
    sid = make(runtime, "go@example.com", Status.CONFIRMED)
    client.cookies.clear()
    response = client.post(unsubscribe_url(runtime, sid), content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": FORM}, follow_redirects=False)
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert "عضویت شما لغو شد" in response.text
    subscriber = find(runtime, "go@example.com")
    assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED
    assert subscriber.unsubscribed_at is not None
    # The page offers to resubscribe; following it brings the reader back.
    [resubscribe] = re.findall(r'action="http://chapar\.test(/preferences/[^"]+/resubscribe)"',
                               response.text)
    back = client.post(resubscribe)
    assert back.status_code == 200 and "دوباره عضو شدید" in back.text
    subscriber = find(runtime, "go@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
    again = client.post(unsubscribe_url(runtime, sid), content=b"List-Unsubscribe=One-Click",
                        headers={"content-type": FORM})
    assert again.status_code == 200


def test_one_click_for_an_erased_reader_still_answers_200(runtime: Runtime,
                                                          client: TestClient) -> None:
    sid = make(runtime, "erased@example.com", Status.CONFIRMED)
    with unit_of_work(runtime.sessions) as session:
        store.erase(session, sid, utcnow(), runtime.settings.secret_key)
    response = client.post(unsubscribe_url(runtime, sid), content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": FORM})
    assert response.status_code == 200


def preferences_url(rt: Runtime, sid: int) -> str:
    return f"/preferences/{rt.tokens.lasting(Purpose.PREFERENCES, sid)}"


def test_preferences_show_status_export_and_erase(runtime: Runtime, client: TestClient) -> None:
    sid = make(runtime, "me@example.com", Status.CONFIRMED)
    url = preferences_url(runtime, sid)
    page = client.get(url)
    assert page.status_code == 200
    assert "me@example.com" in page.text and "عضو" in page.text
    assert re.search("[۰-۹]{4}", page.text)  # the date since, in Persian digits

    data = client.get(url + "/export.json")
    assert data.status_code == 200
    assert "attachment" in data.headers["content-disposition"]
    exported = data.json()
    assert exported["email"] == "me@example.com" and exported["status"] == "confirmed"
    assert exported["consent"]["source"] == "web:test"
    assert exported["consent"]["confirmed_at"] is not None
    assert [e["event"] for e in exported["history"]] == ["subscribe", "confirm"]

    refused = client.post(url + "/erase", data={})
    assert refused.status_code == 400
    assert find(runtime, "me@example.com") is not None

    erased = client.post(url + "/erase", data={"confirm": "yes"})
    assert erased.status_code == 200 and "پاک شد" in erased.text
    assert find(runtime, "me@example.com") is None
    with runtime.sessions() as session:
        assert store.is_erased(session, "me@example.com", runtime.settings.secret_key)
    assert client.get(url).status_code == 200  # the erased page, not an error
    assert client.get(url + "/export.json").status_code == 404


def test_preferences_resubscribe_only_undoes_an_unsubscribe(runtime: Runtime,
                                                            client: TestClient) -> None:
    pending = make(runtime, "p@example.com", Status.PENDING)
    client.post(preferences_url(runtime, pending) + "/resubscribe")
    subscriber = find(runtime, "p@example.com")
    assert subscriber is not None and subscriber.status is Status.PENDING


@pytest.mark.parametrize("path", [
    "/confirm/{confirm}x", "/confirm/{unsubscribe}", "/confirm/{preferences}",
    "/unsubscribe/{confirm}", "/unsubscribe/{preferences}", "/unsubscribe/{unsubscribe}x",
    "/preferences/{unsubscribe}", "/preferences/{confirm}", "/confirm/not-a-token",
    "/confirm/%00%0d%0aX-Injected:%201", "/unsubscribe/" + "A" * 3000,
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_or_swapped_tokens_get_a_clear_400_page(runtime: Runtime, client: TestClient,
                                                       path: str, method: str) -> None:
    sid = make(runtime, "t@example.com", Status.CONFIRMED)
    url = path.format(confirm=runtime.tokens.confirm(sid),
                      unsubscribe=runtime.tokens.lasting(Purpose.UNSUBSCRIBE, sid),
                      preferences=runtime.tokens.lasting(Purpose.PREFERENCES, sid))
    if method == "POST" and url.startswith("/preferences"):
        url += "/resubscribe"
    response = client.request(method, url)
    assert response.status_code == 400
    assert "این پیوند نامعتبر است" in response.text
    assert "x-injected" not in response.headers
    subscriber = find(runtime, "t@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED


def test_an_expired_confirm_link_says_so(runtime: Runtime, client: TestClient) -> None:
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class LastWeek(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - runtime.settings.confirm_token_max_age - 60

    sid = make(runtime, "late@example.com", Status.PENDING)
    token = URLSafeTimedSerializer(runtime.settings.secret_key, salt="chapar.confirm",
                                   signer=LastWeek).dumps(sid)
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 400 and "منقضی" in response.text
    api = client.post(f"/confirm/{token}", headers={"accept": "application/json"})
    assert api.json()["error"] == "token_expired"
    subscriber = find(runtime, "late@example.com")
    assert subscriber is not None and subscriber.status is Status.PENDING


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
