"""Links from emails over HTTP on both backends: confirm, one-click unsubscribe, preferences.

GET never changes anything; POST does; forged, swapped and expired tokens get a clear
400 page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Status, SubscriberEvent
from service.tokens import Purpose
from service.web.app import create_app
from tests.subscribers.factories import confirm_token, find, make

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def confirm_url(rt: Runtime, sid: int) -> str:
    return f"/confirm/{confirm_token(rt, sid)}"


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
        store.erase(session, sid, utcnow())
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
        assert store.is_erased(session, "me@example.com")
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
    url = path.format(confirm=confirm_token(runtime, sid),
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


@pytest.mark.parametrize("method, path, purpose, value", [
    ("POST", "/unsubscribe/{}", "unsubscribe", 2**31),
    ("GET", "/unsubscribe/{}", "unsubscribe", 2**31),
    ("GET", "/preferences/{}", "preferences", 2**31),
    ("POST", "/preferences/{}/resubscribe", "preferences", 2**40),
    ("GET", "/preferences/{}/export.json", "preferences", 2**63),
    ("POST", "/confirm/{}", "confirm", [2**31, "n0nce"]),
    ("POST", "/confirm/{}", "confirm", 2**31),
])
def test_a_signed_id_beyond_the_database_range_is_an_invalid_link_not_a_500(
        runtime: Runtime, client: TestClient, method: str, path: str, purpose: str,
        value: object) -> None:
    from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

    kind = URLSafeTimedSerializer if purpose == "confirm" else URLSafeSerializer
    token = kind(runtime.settings.secret_key, salt=f"chapar.{purpose}").dumps(value)
    response = client.request(method, path.format(token), headers={"accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "token_invalid"


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
