"""The confirmation email against the in-process SMTP server: mailed once, re-rung if lost."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from importlib import resources
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis import Redis
from sqlalchemy.exc import OperationalError

from service.bounces.intake import SoftBouncePolicy, take_report
from service.bounces.verp import SUBSCRIBER, VerpRef, VerpSigner
from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.subscribers import emails, store
from service.subscribers.models import Status, Subscriber
from tests.bounces.messages import hard_bounce
from tests.conftest import make_settings, truncate_all
from tests.subscribers.factories import confirm
from tests.subscribers.rings import rung
from tests.support.databases import waits_for_a_lock
from tests.support.smtp import SmtpRecorder

CONSENT = store.Consent(source="web:test", ip="203.0.113.9")


def subscribe(rt: Runtime, address: str, minutes_ago: float = 0) -> int:
    with unit_of_work(rt.sessions) as session:
        outcome = store.subscribe(session, address, CONSENT, utcnow() - timedelta(minutes=minutes_ago))
    return outcome.subscriber_id


def subscriber(rt: Runtime, subscriber_id: int) -> Subscriber:
    with rt.sessions() as session:
        found = session.get(Subscriber, subscriber_id)
        assert found is not None
        return found


def test_the_confirmation_is_persian_rtl_and_links_to_this_subscriber(
    runtime: Runtime, smtp: SmtpRecorder
) -> None:
    sid = subscribe(runtime, "reader@example.com")
    assert emails.send_confirmation(runtime, sid, utcnow())
    [received] = smtp.to("reader@example.com")
    message = received.message
    assert message["Subject"] == "عضویت خود در خبرنامه هفتگی را تأیید کنید"
    assert message["To"] == "reader@example.com"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    html_body = html.get_content()
    assert '<html lang="fa" dir="rtl"' in html_body
    assert "<title>عضویت خود در خبرنامه هفتگی را تأیید کنید</title>" in html_body
    [url] = re.findall(r"http://chapar\.test/confirm/\S+", text.get_content())
    assert runtime.tokens.read_confirm(url.rsplit("/", 1)[1]) == (
        sid, subscriber(runtime, sid).confirm_nonce)
    assert url in html_body


def test_mailed_once_then_a_redelivered_task_sends_nothing(runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = subscribe(runtime, "once@example.com")
    assert emails.send_confirmation(runtime, sid, utcnow())
    assert not emails.send_confirmation(runtime, sid, utcnow())
    assert smtp.counts()["once@example.com"] == 1
    row = subscriber(runtime, sid)
    assert row.confirmation_mailed_at is not None
    assert row.confirmation_requested_at is not None
    assert row.confirmation_mailed_at >= row.confirmation_requested_at


def test_a_new_request_a_day_later_is_mailed_again(runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = subscribe(runtime, "again@example.com", minutes_ago=25 * 60)
    assert emails.send_confirmation(runtime, sid, utcnow() - timedelta(hours=24))
    subscribe(runtime, "again@example.com")
    assert emails.send_confirmation(runtime, sid, utcnow())
    assert smtp.counts()["again@example.com"] == 2


def test_nothing_is_mailed_to_confirmed_or_unsubscribed_readers(
    runtime: Runtime, smtp: SmtpRecorder
) -> None:
    confirmed = subscribe(runtime, "yes@example.com")
    gone = subscribe(runtime, "no@example.com")
    with unit_of_work(runtime.sessions) as session:
        confirm(session, confirmed)
        store.unsubscribe(session, gone, utcnow(), "test")
    assert not emails.send_confirmation(runtime, confirmed, utcnow())
    assert not emails.send_confirmation(runtime, gone, utcnow())
    assert not emails.send_confirmation(runtime, 987654, utcnow())
    assert smtp.messages == []


def test_a_refused_email_stays_owed(runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = subscribe(runtime, "refused@example.com", minutes_ago=10)
    smtp.faults.rcpt["refused@example.com"] = "451 4.3.0 try again later"
    with pytest.raises(OSError):
        emails.send_confirmation(runtime, sid, utcnow())
    assert subscriber(runtime, sid).confirmation_mailed_at is None
    with runtime.sessions() as session:
        assert emails.owed_confirmation_ids(session, utcnow()) == [sid]
    smtp.faults.rcpt.clear()
    assert emails.send_confirmation(runtime, sid, utcnow())
    assert smtp.counts()["refused@example.com"] == 1


def test_the_sweeper_looks_only_at_lost_requests_younger_than_a_day(
    runtime: Runtime, smtp: SmtpRecorder
) -> None:
    lost = subscribe(runtime, "lost@example.com", minutes_ago=10)
    subscribe(runtime, "fresh@example.com", minutes_ago=1)  # its task may still be on the way
    subscribe(runtime, "stale@example.com", minutes_ago=25 * 60)  # a day old: subscribe again
    mailed = subscribe(runtime, "mailed@example.com", minutes_ago=10)
    confirmed = subscribe(runtime, "confirmed@example.com", minutes_ago=10)
    assert emails.send_confirmation(runtime, mailed, utcnow())
    with unit_of_work(runtime.sessions) as session:
        confirm(session, confirmed)
        assert emails.owed_confirmation_ids(session, utcnow()) == [lost]


def test_the_sweeper_rings_again_through_the_broker(runtime: Runtime, smtp: SmtpRecorder) -> None:
    first = subscribe(runtime, "one@example.com", minutes_ago=30)
    second = subscribe(runtime, "two@example.com", minutes_ago=20)
    assert rung(runtime.settings) == []
    assert emails.sweep_confirmations(runtime, utcnow()) == 2
    assert sorted(rung(runtime.settings)) == [[first], [second]]  # one ring each
    # Once mailed, a sweep finds nothing more to do.
    for sid in (first, second):
        assert emails.send_confirmation(runtime, sid, utcnow())
    assert emails.sweep_confirmations(runtime, utcnow()) == 0
    assert len(rung(runtime.settings)) == 2


def test_imported_pending_readers_are_not_mailed_unasked(runtime: Runtime, smtp: SmtpRecorder) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.add(Subscriber(email="imported@example.com", status=Status.PENDING,
                               created_at=utcnow(), updated_at=utcnow(),
                               consent_source="import:list.csv", consent_at=utcnow()))
    with runtime.sessions() as session:
        sid = store.find_by_email(session, "imported@example.com")
        assert sid is not None
        assert emails.owed_confirmation_ids(session, utcnow() + timedelta(hours=1)) == []
    assert not emails.send_confirmation(runtime, sid.id, utcnow())


def test_the_confirmation_follows_the_rtl_email_rules(runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = subscribe(runtime, "rules@example.com")
    assert emails.send_confirmation(runtime, sid, utcnow())
    [received] = smtp.to("rules@example.com")
    message = received.message
    raw = received.data.decode("ascii")  # every header and part is 7-bit on the wire
    headers = raw.split("\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in headers.split("\r\n"))
    assert "=?utf-8?" in headers.lower()  # the Persian subject and name as encoded-words
    assert message["Message-ID"].endswith("@chapar.test>") and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "base64" for p in parts)
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    html = parts[1].get_content()
    assert '<body dir="rtl"' in html and 'role="article"' in html and "<!--[if mso]>" in html
    assert "@media" in html and "!important" in html  # responsive and dark rules survive
    assert not any(ch in html + parts[0].get_content() for ch in "\u064a\u0643")
    for href in re.findall(r'href="([^"]+)"', html):
        assert not re.search("[\u06f0-\u06f9]", href)  # Persian digits only in text
    template = resources.files("service.email_templates").joinpath("confirm/body.html").read_text()
    assert html.count("\u200c") >= template.count("\u200c") > 0  # half-spaces kept
    assert len(html.encode()) < 100_000


def test_two_deliveries_of_the_same_task_at_once_mail_once(runtime: Runtime, smtp: SmtpRecorder) -> None:
    # PostgreSQL: the row lock. SQLite (`chapar up` runs two pool processes): the claim.
    sid = subscribe(runtime, "race@example.com", minutes_ago=6)
    results: list[bool] = []
    start = threading.Barrier(6)

    def deliver() -> None:
        start.wait()
        results.append(emails.send_confirmation(runtime, sid, utcnow()))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False] * 5 + [True]
    assert smtp.counts()["race@example.com"] == 1
    row = subscriber(runtime, sid)
    assert row.confirmation_mailed_at is not None and row.confirmation_mailing_at is None


class SecondPress:
    """A reader's second press of the button: a web transaction holding the subscriber row."""

    def __init__(self, rt: Runtime, address: str) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._press, args=(rt, address))

    def _press(self, rt: Runtime, address: str) -> None:
        with unit_of_work(rt.sessions) as session:
            store.subscribe(session, address, CONSENT, utcnow())  # locks the row
            self.held.set()
            self.release.wait(30)

    def __enter__(self) -> SecondPress:
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(30)


def test_a_sender_waits_for_a_second_press_instead_of_skipping_the_row(
        runtime: Runtime, smtp: SmtpRecorder, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the row lock is PostgreSQL's; SQLite serialises whole transactions")
    sid = subscribe(runtime, "impatient@example.com")
    results: list[bool] = []
    with SecondPress(runtime, "impatient@example.com") as press:
        sender = threading.Thread(
            target=lambda: results.append(emails.send_confirmation(runtime, sid, utcnow())))
        sender.start()
        # waiting for the row, not done with "nothing owed" (nor merely slow to start)
        assert waits_for_a_lock(runtime.engine, "transactionid")
        assert sender.is_alive()
        press.release.set()
        sender.join(30)
    assert results == [True]
    assert smtp.counts()["impatient@example.com"] == 1


def test_a_row_held_past_the_wait_stays_owed_for_the_retry(
        runtime: Runtime, smtp: SmtpRecorder, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend != "postgresql":
        pytest.skip("the row lock is PostgreSQL's; SQLite serialises whole transactions")
    monkeypatch.setattr(emails, "LOCK_WAIT", timedelta(milliseconds=300))
    sid = subscribe(runtime, "held@example.com")
    with SecondPress(runtime, "held@example.com"), pytest.raises(emails.ConfirmationBusy):
        emails.send_confirmation(runtime, sid, utcnow())
    assert smtp.messages == []
    assert emails.send_confirmation(runtime, sid, utcnow())  # the task's retry
    assert smtp.counts()["held@example.com"] == 1


def test_after_an_smtp_outage_two_workers_mail_the_owed_email_once(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = subscribe(runtime, "outage@example.com", minutes_ago=10)
    smtp.faults.greeting_421 = 1  # the outage: the first try fails and stays owed
    with pytest.raises(OSError):
        emails.send_confirmation(runtime, sid, utcnow())
    assert subscriber(runtime, sid).confirmation_mailing_at is None
    with runtime.sessions() as session:
        assert emails.owed_confirmation_ids(session, utcnow()) == [sid]
    # SMTP is back; the task's retry and the sweeper's ring arrive together.
    results: list[bool] = []
    start = threading.Barrier(2)

    def deliver() -> None:
        start.wait()
        results.append(emails.send_confirmation(runtime, sid, utcnow()))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, True]
    assert smtp.counts()["outage@example.com"] == 1


def test_a_claim_left_by_a_killed_sender_expires(runtime: Runtime, smtp: SmtpRecorder,
                                                 backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL holds the row lock instead; a killed sender's lock ends with it")
    sid = subscribe(runtime, "killed@example.com", minutes_ago=20)
    with unit_of_work(runtime.sessions) as session:
        found = session.get(Subscriber, sid)
        assert found is not None
        found.confirmation_mailing_at = utcnow() - timedelta(minutes=1)
    assert not emails.send_confirmation(runtime, sid, utcnow())  # still being mailed
    assert smtp.messages == []
    later = utcnow() + emails.CLAIM_EXPIRES_AFTER
    assert emails.send_confirmation(runtime, sid, later)
    assert smtp.counts()["killed@example.com"] == 1


def test_a_mailbox_that_does_not_exist_is_marked_bounced_not_retried(
    runtime: Runtime, smtp: SmtpRecorder
) -> None:
    sid = subscribe(runtime, "nobody@example.com", minutes_ago=10)
    smtp.faults.rcpt["nobody@example.com"] = "550 5.1.1 no such user"
    assert emails.send_confirmation(runtime, sid, utcnow()) is False  # no exception: no retry
    row = subscriber(runtime, sid)
    assert row.status is Status.BOUNCED and row.bounced_at is not None
    with runtime.sessions() as session:
        found = session.get(Subscriber, sid)
        assert found is not None
        assert [e.kind for e in found.events] == ["subscribe", "bounce"]
        assert "550" in (found.events[-1].detail or "")
        assert emails.owed_confirmation_ids(session, utcnow()) == []
    assert smtp.messages == []


@pytest.fixture
def with_redis(database_url: str, redis_db: str, tmp_path: Path,
               smtp: SmtpRecorder) -> Iterator[Runtime]:
    """A Runtime with Redis at hand, on emptied tables."""
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=database_url,
                                             redis_url=redis_db, smtp_url=smtp.url))
    truncate_all(rt)
    try:
        yield rt
    finally:
        truncate_all(rt)
        rt.close()


def test_while_smtp_is_down_the_sweeper_rings_each_request_once_a_quarter_hour(
    with_redis: Runtime, redis_db: str
) -> None:
    rt = with_redis
    client = Redis.from_url(redis_db)
    for key in client.scan_iter(match="chapar:confirmation-rung:*"):  # ids are reused per test
        client.delete(key)
    sid = subscribe(rt, "patient@example.com", minutes_ago=10)
    assert emails.sweep_confirmations(rt, utcnow()) == 1
    assert emails.sweep_confirmations(rt, utcnow()) == 0  # its task may still be retrying
    assert rung(rt.settings) == [[sid]]
    ttl = client.ttl(f"chapar:confirmation-rung:{sid}")
    assert 0 < ttl <= emails.RERING_AFTER.total_seconds()
    client.delete(f"chapar:confirmation-rung:{sid}")  # a quarter of an hour later
    assert emails.sweep_confirmations(rt, utcnow()) == 1


def test_an_accepted_email_whose_record_was_lost_is_recorded_not_mailed_again(
        with_redis: Runtime, smtp: SmtpRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = with_redis
    record = emails.mark_confirmation_mailed

    def dropped(*args: object) -> None:  # the SMTP server said 250; the database went away
        raise OperationalError("UPDATE subscribers", {}, ConnectionError("server closed the connection"))

    sid = subscribe(rt, "once@example.com")
    monkeypatch.setattr(emails, "mark_confirmation_mailed", dropped)
    with pytest.raises(OperationalError):
        emails.send_confirmation(rt, sid, utcnow())
    monkeypatch.setattr(emails, "mark_confirmation_mailed", record)
    assert smtp.counts()["once@example.com"] == 1
    assert subscriber(rt, sid).confirmation_mailed_at is None  # the database never heard
    assert not emails.send_confirmation(rt, sid, utcnow())  # the sweeper's ring, later
    assert smtp.counts()["once@example.com"] == 1
    assert subscriber(rt, sid).confirmation_mailed_at is not None


def test_without_redis_every_sweep_rings(runtime: Runtime) -> None:
    subscribe(runtime, "embedded@example.com", minutes_ago=10)
    assert emails.sweep_confirmations(runtime, utcnow()) == 1
    assert emails.sweep_confirmations(runtime, utcnow()) == 1
    assert len(rung(runtime.settings)) == 2


def dkim_key(folder: Path) -> tuple[Path, bytes]:
    """An RSA key file for DKIM and its DNS TXT record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_the_confirmation_leaves_like_a_digest_signed_with_a_verp_return_path(
        runtime: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    path, record = dkim_key(tmp_path)
    rt = Runtime(settings=make_settings(tmp_path, database_url=runtime.settings.database_url,
                                        smtp_url=smtp.url, dkim_selector="s1",
                                        dkim_private_key_path=path),
                 engine=runtime.engine, sessions=runtime.sessions, tokens=runtime.tokens)
    sid = subscribe(rt, "signed@example.com")
    assert emails.send_confirmation(rt, sid, utcnow())
    [received] = smtp.to("signed@example.com")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.chapar.test."
        return record

    assert received.data.startswith(b"DKIM-Signature:") and dkim.verify(received.data, dnsfunc=dns)
    assert received.helo == "chapar.test"  # the From domain, not Python's [127.0.0.1]
    ref = VerpSigner(rt.settings.secret_key).read_address(received.mail_from)
    assert ref == VerpRef(SUBSCRIBER, sid) and received.mail_from.endswith("@chapar.test")
    assert len(received.mail_from.partition("@")[0]) <= 64

    # A bounce of it comes back to that return path and marks the reader bounced.
    with unit_of_work(rt.sessions) as session:
        intake = take_report(session, hard_bounce(received.mail_from, "signed@example.com"),
                             VerpSigner(rt.settings.secret_key), utcnow(), SoftBouncePolicy(), "api")
    assert (intake.outcome, intake.subscriber_id, intake.delivery_id) == ("hard", sid, None)
    assert subscriber(rt, sid).status is Status.BOUNCED


def test_the_helo_name_is_a_setting(runtime: Runtime, smtp: SmtpRecorder, tmp_path: Path) -> None:
    rt = Runtime(settings=make_settings(tmp_path, database_url=runtime.settings.database_url,
                                        smtp_url=smtp.url, smtp_helo="mta1.chapar.test"),
                 engine=runtime.engine, sessions=runtime.sessions, tokens=runtime.tokens)
    assert emails.send_confirmation(rt, subscribe(rt, "helo@example.com"), utcnow())
    assert [m.helo for m in smtp.messages] == ["mta1.chapar.test"]
    # and the session ends with QUIT (counted by its HELO name: a connection an earlier
    # test left open may say its own QUIT to the same server while this one runs)
    assert smtp.quits_by_helo["mta1.chapar.test"] == 1
