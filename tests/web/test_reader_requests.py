"""A confirm link confirms only the request it was mailed for; consent is appended, never overwritten.

Over HTTP on both backends, with the confirmation email taken from the SMTP server
as the reader would find it in their inbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.clock import utcnow
from service.runtime import Runtime
from service.subscribers import emails
from service.subscribers.models import ConsentRecord, Status
from service.tokens import Purpose
from service.web.app import create_app
from tests.subscribers.factories import find
from tests.support.smtp import SmtpRecorder

READER = {"user-agent": "reader's browser"}
STRANGER = {"user-agent": "stranger's script"}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def subscribe(client: TestClient, email: str, headers: dict[str, str]) -> None:
    response = client.post("/subscribe", data={"email": email, "source": "subscribe-page"},
                           headers=headers)
    assert response.status_code == 200


def mailed_confirm_path(rt: Runtime, smtp: SmtpRecorder, email: str) -> str:
    """Send what is owed and return the confirm link of the newest email in the inbox."""
    subscriber = find(rt, email)
    assert subscriber is not None
    emails.send_confirmation(rt, subscriber.id, utcnow())
    text = smtp.to(email)[-1].message.get_body(("plain",))
    assert text is not None
    [url] = re.findall(r"http://chapar\.test(/confirm/\S+)", text.get_content())
    return url


def status(rt: Runtime, email: str) -> Status:
    subscriber = find(rt, email)
    assert subscriber is not None
    return subscriber.status


def test_a_stranger_cannot_undo_an_unsubscribe_with_the_readers_old_link(
        runtime: Runtime, client: TestClient, smtp: SmtpRecorder) -> None:
    subscribe(client, "reader@example.com", READER)
    old_link = mailed_confirm_path(runtime, smtp, "reader@example.com")
    assert client.post(old_link, headers=READER).status_code == 200
    assert status(runtime, "reader@example.com") is Status.CONFIRMED
    reader = find(runtime, "reader@example.com")
    assert reader is not None
    unsubscribe = runtime.tokens.lasting(Purpose.UNSUBSCRIBE, reader.id)
    assert client.post(f"/unsubscribe/{unsubscribe}").status_code == 200

    subscribe(client, "reader@example.com", STRANGER)  # anyone may ask, with no proof
    replay = client.post(old_link, headers=STRANGER)  # the link is still within its 7 days
    assert replay.status_code == 200 and "قدیمی" in replay.text
    assert status(runtime, "reader@example.com") is Status.PENDING

    # The consent in force is still the reader's own; the stranger's request is on record.
    reader = find(runtime, "reader@example.com")
    assert reader is not None
    assert reader.consent_user_agent == "reader's browser"
    with runtime.sessions() as session:
        history = session.execute(
            select(ConsentRecord.kind, ConsentRecord.user_agent)
            .where(ConsentRecord.subscriber_id == reader.id).order_by(ConsentRecord.id)
        ).all()
    assert [tuple(row) for row in history] == [
        ("subscribe", "reader's browser"), ("confirm", "reader's browser"),
        ("subscribe", "stranger's script"),
    ]

    # The new request owes its own email at once, though one went out today already,
    # and only the link in it confirms the address.
    new_link = mailed_confirm_path(runtime, smtp, "reader@example.com")
    assert new_link != old_link and len(smtp.to("reader@example.com")) == 2
    assert client.post(new_link, headers=READER).status_code == 200
    assert status(runtime, "reader@example.com") is Status.CONFIRMED


def test_asking_twice_while_pending_keeps_the_mailed_link_working(
        runtime: Runtime, client: TestClient, smtp: SmtpRecorder) -> None:
    subscribe(client, "twice@example.com", READER)
    link = mailed_confirm_path(runtime, smtp, "twice@example.com")
    subscribe(client, "twice@example.com", READER)  # "did it work?": same day, no new email
    subscribe(client, "twice@example.com", STRANGER)
    twice = find(runtime, "twice@example.com")
    assert twice is not None
    assert not emails.send_confirmation(runtime, twice.id, utcnow())
    assert len(smtp.to("twice@example.com")) == 1
    assert client.post(link, headers=READER).status_code == 200
    confirmed = find(runtime, "twice@example.com")
    assert confirmed is not None and confirmed.status is Status.CONFIRMED
    # What was confirmed is the request the email answered, not the latest one.
    assert confirmed.consent_user_agent == "reader's browser"


def test_export_holds_the_consent_history_and_erase_removes_it(
        runtime: Runtime, client: TestClient, smtp: SmtpRecorder) -> None:
    subscribe(client, "mine@example.com", READER)
    client.post(mailed_confirm_path(runtime, smtp, "mine@example.com"), headers=READER)
    mine = find(runtime, "mine@example.com")
    assert mine is not None
    preferences = f"/preferences/{runtime.tokens.lasting(Purpose.PREFERENCES, mine.id)}"
    exported = client.get(f"{preferences}/export.json").json()
    assert [(c["kind"], c["source"], c["user_agent"]) for c in exported["consent_history"]] == [
        ("subscribe", "web:subscribe-page", "reader's browser"),
        ("confirm", "confirmation link", "reader's browser"),
    ]
    assert all(c["at"] and c["ip"] for c in exported["consent_history"])
    assert client.post(f"{preferences}/erase", data={"confirm": "yes"}).status_code == 200
    with runtime.sessions() as session:
        left = session.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == mine.id))
        assert left.all() == []
