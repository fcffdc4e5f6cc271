"""Rotating CHAPAR_SECRET_KEY: links and return paths mailed under the old secret keep working
while it is listed in CHAPAR_SECRET_KEY_FALLBACKS, and everything new is signed with the new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.bounces.verp import VerpSigner
from service.clock import utcnow
from service.runtime import Runtime
from service.subscribers import emails
from service.subscribers.models import Status
from service.tokens import Purpose, Tokens
from service.web.app import create_app
from tests.bounces.factories import add_subscriber, sent_delivery
from tests.bounces.messages import hard_bounce
from tests.conftest import make_settings
from tests.subscribers.factories import find, make
from tests.support.smtp import SmtpRecorder

NEW_SECRET = "the-secret-after-rotation-that-is-long-enough-0123"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def rotated_runtime(old: Runtime, tmp_path: Path, fallbacks: str) -> Runtime:
    """Another process of the same installation, started after the secret was changed."""
    return Runtime.from_settings(make_settings(
        tmp_path / "rotated", database_url=old.settings.effective_database_url,
        smtp_url=old.settings.smtp_url, secret_key=NEW_SECRET, secret_key_fallbacks=fallbacks))


@pytest.fixture
def rotated(runtime: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    retired = "other-retired-secret-of-2025-0123456789abcdef"
    rt = rotated_runtime(runtime, tmp_path, f" {retired} , {runtime.settings.secret_key}")
    yield rt
    rt.close()


@pytest.fixture
def client(rotated: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rotated), raise_server_exceptions=False) as test_client:
        yield test_client


def test_last_months_unsubscribe_and_preferences_links_still_work(
        runtime: Runtime, rotated: Runtime, client: TestClient) -> None:
    sid = make(runtime, "last-month@example.com", Status.CONFIRMED)
    mailed = runtime.tokens.lasting(Purpose.UNSUBSCRIBE, sid)  # in an issue sent before
    preferences = client.get(f"/preferences/{runtime.tokens.lasting(Purpose.PREFERENCES, sid)}")
    assert preferences.status_code == 200 and "last-month@example.com" in preferences.text

    response = client.post(f"/unsubscribe/{mailed}", content=b"List-Unsubscribe=One-Click",
                           headers=FORM)
    assert response.status_code == 200
    subscriber = find(runtime, "last-month@example.com")
    assert subscriber is not None and subscriber.status is Status.UNSUBSCRIBED
    # The page's own links are signed with the new secret alone.
    [resubscribe] = re.findall(r"/preferences/([^/\"]+)/resubscribe", response.text)
    assert Tokens(NEW_SECRET, 60).read_lasting(Purpose.PREFERENCES, resubscribe) == sid
    assert resubscribe != runtime.tokens.lasting(Purpose.PREFERENCES, sid)


def test_a_confirmation_mailed_before_the_rotation_still_confirms(
        runtime: Runtime, client: TestClient, smtp: SmtpRecorder) -> None:
    sid = make(runtime, "waiting@example.com", Status.PENDING)
    assert emails.send_confirmation(runtime, sid, utcnow())
    text = smtp.to("waiting@example.com")[0].message.get_body(("plain",))
    assert text is not None
    [link] = re.findall(r"http://chapar\.test(/confirm/\S+)", text.get_content())
    assert client.post(link).status_code == 200
    subscriber = find(runtime, "waiting@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED


def test_a_bounce_of_mail_sent_before_the_rotation_is_still_matched(
        runtime: Runtime, client: TestClient) -> None:
    with runtime.sessions.begin() as session:
        reader = add_subscriber(session, "gone@example.test")
        verp = VerpSigner(runtime.tokens).address(sent_delivery(session, reader).id,
                                                  runtime.settings.verp_domain)
        reader_id = reader.id
    response = client.post("/api/v1/bounces", content=hard_bounce(verp, "gone@example.test"),
                           headers={"Content-Type": "message/rfc822", "X-API-Key": "test-api-key"})
    assert response.status_code == 202
    assert (response.json()["outcome"], response.json()["subscriber_id"]) == ("hard", reader_id)


def test_once_the_old_secret_is_dropped_its_links_are_invalid(runtime: Runtime,
                                                               tmp_path: Path) -> None:
    sid = make(runtime, "much-later@example.com", Status.CONFIRMED)
    mailed = runtime.tokens.lasting(Purpose.UNSUBSCRIBE, sid)
    dropped = rotated_runtime(runtime, tmp_path, fallbacks="")
    try:
        with TestClient(create_app(dropped), raise_server_exceptions=False) as client:
            response = client.post(f"/unsubscribe/{mailed}", headers=FORM)
    finally:
        dropped.close()
    assert response.status_code == 400 and "این پیوند نامعتبر است" in response.text
    subscriber = find(runtime, "much-later@example.com")
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
