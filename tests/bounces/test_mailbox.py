"""The poller against real POP3 and IMAP servers on 127.0.0.1, via Python's poplib and imaplib."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.bounces.inbox import poll_bounce_mailbox
from service.bounces.mailbox import Mailbox
from service.bounces.verp import VerpSigner
from service.delivery.models import Bounce
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber
from tests.bounces.factories import add_subscriber, sent_delivery
from tests.bounces.mailservers import PASSWORD, Maildrop, MailServer
from tests.bounces.messages import GARBAGE, arf_complaint, hard_bounce, soft_bounce
from tests.delivery.factories import NOW


def test_mailbox_urls() -> None:
    box = Mailbox.from_url("imaps://bounce%40chapar.test:p%2Fw@mail.chapar.test/Bounces")
    assert (box.protocol, box.tls, box.port, box.username, box.password, box.folder) == (
        "imap", True, 993, "bounce@chapar.test", "p/w", "Bounces")
    box = Mailbox.from_url("pop3://u:p@127.0.0.1")
    assert (box.protocol, box.tls, box.port, box.folder) == ("pop3", False, 110, "INBOX")
    with pytest.raises(ValueError):
        Mailbox.from_url("http://u:p@host/")
    with pytest.raises(ValueError):
        Mailbox.from_url("imap://host/")


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_the_poller_takes_every_report_in_and_deletes_what_it_took(
        runtime: Runtime, protocol: str) -> None:
    signer = VerpSigner(runtime.settings.secret_key)
    with runtime.sessions.begin() as session:
        gone, full, annoyed = (add_subscriber(session, f"{n}@example.test")
                               for n in ("gone", "full", "annoyed"))
        ids = {s.email: s.id for s in (gone, full, annoyed)}
        verp = {s.email: signer.address(sent_delivery(session, s).id, "chapar.test")
                for s in (gone, full, annoyed)}
    drop = Maildrop([
        hard_bounce(verp["gone@example.test"], "gone@example.test"),
        soft_bounce(verp["full@example.test"], "full@example.test"),
        GARBAGE,
        arf_complaint(verp["annoyed@example.test"], "annoyed@example.test"),
    ])
    times = iter(NOW + timedelta(minutes=m) for m in range(100))

    with MailServer(protocol, drop) as server:
        runtime.settings.bounce_mailbox_url = server.url
        result = poll_bounce_mailbox(runtime, lambda: next(times))
        again = poll_bounce_mailbox(runtime, lambda: next(times))

    assert result is not None and again is not None
    assert (result.fetched, result.taken, result.failed) == (4, 4, 0)
    assert again.fetched == 0  # everything it took was deleted
    assert drop.remaining() == []
    assert drop.logins == [PASSWORD, PASSWORD]  # the percent-encoded password, decoded
    with runtime.sessions() as session:
        status = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        kinds = sorted(session.scalars(select(Bounce.kind)))
        linked = set(session.scalars(select(Bounce.subscriber_id)))
    assert status == {"gone@example.test": Status.BOUNCED, "full@example.test": Status.CONFIRMED,
                      "annoyed@example.test": Status.COMPLAINED}
    assert kinds == ["complaint", "hard", "soft"]
    assert linked == set(ids.values())


def test_a_report_that_cannot_be_taken_stays_in_the_mailbox(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        reader = add_subscriber(session, "gone@example.test")
        verp = VerpSigner(runtime.settings.secret_key).address(
            sent_delivery(session, reader).id, "chapar.test")
    drop = Maildrop([hard_bounce(verp, reader.email), hard_bounce(verp, reader.email)])
    calls = iter([RuntimeError("database went away"), NOW, NOW])

    def clock():  # type: ignore[no-untyped-def]
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    with MailServer("pop3", drop) as server:
        runtime.settings.bounce_mailbox_url = server.url
        result = poll_bounce_mailbox(runtime, clock)
    assert result is not None and (result.taken, result.failed) == (1, 1)
    assert len(drop.remaining()) == 1


def test_no_mailbox_configured_means_no_poll(runtime: Runtime) -> None:
    runtime.settings.bounce_mailbox_url = ""
    assert poll_bounce_mailbox(runtime, lambda: NOW) is None


def test_beat_polls_the_mailbox_only_when_one_is_configured(runtime: Runtime) -> None:
    from worker.app import beat_schedule

    runtime.settings.bounce_mailbox_url = ""
    assert "poll-bounces" not in beat_schedule(runtime.settings)
    runtime.settings.bounce_mailbox_url = "imaps://u:p@127.0.0.1/INBOX"
    runtime.settings.bounce_poll_seconds = 120
    entry = beat_schedule(runtime.settings)["poll-bounces"]
    assert entry["task"] == "chapar.poll_bounces"
    assert entry["schedule"] == timedelta(seconds=120)
