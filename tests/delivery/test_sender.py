"""The sender against the recording SMTP server: headers, outcomes of every fault, the ledger."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.bounces.verp import read_verp
from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import ledger, sender
from service.delivery.message import Recipient, message_id
from service.delivery.models import Delivery, DeliveryStatus
from service.delivery.sender import DeliveryAgent
from service.delivery.transport import SmtpError
from service.digests.models import Issue, IssueStatus
from service.instance_keys import MESSAGE_ID, instance_key
from service.ops import incidents, metrics
from service.ops.models import Counter as OpsCounter
from service.ops.models import Incident
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber
from tests.delivery.factories import add_subscribers, make_issue
from tests.support.smtp import SmtpRecorder


def with_settings(rt: Runtime, **overrides: Any) -> Runtime:
    return Runtime(settings=rt.settings.model_copy(update=overrides), engine=rt.engine,
                   sessions=rt.sessions, tokens=rt.tokens)


def start(rt: Runtime, subscribers: int, **kwargs: Any) -> tuple[int, list[str]]:
    with unit_of_work(rt.sessions) as session:
        emails = add_subscribers(session, subscribers, **kwargs)
        issue_id = make_issue(session).id
    with unit_of_work(rt.sessions) as session:
        assert ledger.start_send(session, issue_id, utcnow(), timedelta(hours=1)) == subscribers
    return issue_id, emails


def rows(rt: Runtime, issue_id: int) -> dict[str, Delivery]:
    with rt.sessions() as session:
        found = session.execute(
            select(Subscriber.email, Delivery).join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.issue_id == issue_id)
        ).all()
        return {email: row for email, row in found}


def issue_status(rt: Runtime, issue_id: int) -> IssueStatus:
    with rt.sessions() as session:
        status = session.scalar(select(Issue.status).where(Issue.id == issue_id))
        assert status is not None
        return status


def make_due(rt: Runtime, issue_id: int) -> None:
    with unit_of_work(rt.sessions) as session:
        session.execute(update(Delivery).where(Delivery.issue_id == issue_id)
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_every_confirmed_subscriber_gets_one_message_with_the_list_headers(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 120)
    with unit_of_work(runtime.sessions) as session:
        add_subscribers(session, 3, prefix="pending", status=Status.PENDING)
    report = DeliveryAgent(with_settings(runtime, send_batch_size=50)).deliver(issue_id)

    assert report.finished and report.outcomes == Counter(sent=120)
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert {r.status for r in rows(runtime, issue_id).values()} == {DeliveryStatus.SENT}
    assert issue_status(runtime, issue_id) is IssueStatus.SENT

    received = smtp.to(emails[7])[0]
    message = received.message
    delivery = rows(runtime, issue_id)[emails[7]]
    assert read_verp(runtime.tokens, received.mail_from) == delivery.id
    assert received.mail_from.startswith("bounces+") and received.mail_from.endswith("@chapar.test")
    with runtime.sessions() as session:
        key = instance_key(session, MESSAGE_ID).hex()
    assert message["Message-ID"] == message_id(1, delivery.subscriber_id or 0, key, "chapar.test")
    # A copy resent after the secret was rotated folds with this one.
    rotated = DeliveryAgent(with_settings(runtime, secret_key="a-rotated-secret-long-enough-0123456789"))
    built = rotated.message_for(issue_id)
    assert built is not None
    resent = built.render(Recipient(delivery.id, delivery.subscriber_id or 0, emails[7], "example.com"),
                          utcnow())
    assert f"Message-ID: {message['Message-ID']}\r\n".encode() in resent
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("http://chapar.test/unsubscribe/")
    assert message["List-Id"].endswith("<weekly.chapar.localhost>")
    assert message["Feedback-ID"] and message["Date"]
    text, html = (part.get_content() for part in message.iter_parts())
    assert unsubscribe in html and unsubscribe in text
    assert "گزارش‌های هفته" in html and "%%CHAPAR" not in html + text
    # Each reader gets their own links.
    other = smtp.to(emails[8])[0].message["List-Unsubscribe"]
    assert other != message["List-Unsubscribe"]


def test_unsubscribed_after_fan_out_is_not_mailed(runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 5)
    with unit_of_work(runtime.sessions) as session:
        session.execute(update(Subscriber).where(Subscriber.email == emails[0])
                        .values(status=Status.UNSUBSCRIBED))
    DeliveryAgent(runtime).deliver(issue_id)
    assert emails[0] not in smtp.counts() and len(smtp.counts()) == 4
    assert rows(runtime, issue_id)[emails[0]].status is DeliveryStatus.CANCELLED


def test_temporary_refusals_are_deferred_then_sent(runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 6)
    smtp.faults.once = True
    smtp.faults.rcpt = {emails[1]: "451 4.3.0 try later", emails[2]: "452 4.2.2 mailbox full"}
    agent = DeliveryAgent(runtime)
    agent.deliver(issue_id)
    ledger_rows = rows(runtime, issue_id)
    for email, code in ((emails[1], 451), (emails[2], 452)):
        assert ledger_rows[email].status is DeliveryStatus.DEFERRED
        assert ledger_rows[email].last_code == code and ledger_rows[email].next_attempt_at
    assert issue_status(runtime, issue_id) is IssueStatus.SENDING  # not finished: rows pending

    make_due(runtime, issue_id)
    agent.deliver(issue_id)
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert rows(runtime, issue_id)[emails[1]].attempts == 2
    assert issue_status(runtime, issue_id) is IssueStatus.SENT


def test_permanent_refusals_fail_and_a_missing_mailbox_is_suppressed(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 5)
    smtp.faults.rcpt = {emails[0]: "550 5.1.1 No such user", emails[1]: "553 5.1.3 Bad address"}
    smtp.faults.after_data = {emails[2]: "554 5.7.1 Message rejected"}
    DeliveryAgent(runtime).deliver(issue_id)
    r = rows(runtime, issue_id)
    assert [r[e].status for e in emails] == [DeliveryStatus.FAILED] * 3 + [DeliveryStatus.SENT] * 2
    assert [r[e].last_code for e in emails[:3]] == [550, 553, 554]
    with runtime.sessions() as session:
        statuses = {e: s for e, s in session.execute(select(Subscriber.email, Subscriber.status))}
    assert statuses[emails[0]] is Status.BOUNCED
    assert statuses[emails[1]] is Status.BOUNCED  # 5.1.3: the address itself is bad
    assert statuses[emails[2]] is Status.CONFIRMED  # a rejected message says nothing of the address
    assert issue_status(runtime, issue_id) is IssueStatus.SENT
    assert smtp.counts() == Counter({emails[3]: 1, emails[4]: 1})


def test_greeting_421_defers_the_chunk_and_the_retry_sends_it(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 4)
    smtp.faults.greeting_421 = 1
    agent = DeliveryAgent(runtime)
    agent.deliver(issue_id)
    assert {r.status for r in rows(runtime, issue_id).values()} == {DeliveryStatus.DEFERRED}
    assert not smtp.counts()
    make_due(runtime, issue_id)
    agent.deliver(issue_id)
    assert smtp.counts() == Counter({e: 1 for e in emails})


class LostReplies:
    """Every other commit of the sender lands, then its reply is lost: it runs the unit again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commits = 0
        self.lost = 0
        monkeypatch.setattr(sender, "unit_of_work", self.unit_of_work)
        monkeypatch.setattr(sender, "RETRY_FIRST_SECONDS", 0.01)

    @contextmanager
    def unit_of_work(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        with unit_of_work(factory) as session:
            yield session
        self.commits += 1
        if self.commits % 2:
            self.lost += 1
            raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def lost_reply_issue(rt: Runtime, backend: str, readers: int) -> tuple[int, list[str]]:
    """An issue being sent to `readers`, for a test that loses a database reply (PostgreSQL only)."""
    if backend != "postgresql":
        pytest.skip("a reply lost on the wire is a server's; SQLite is a local file")
    return start(rt, readers)


def counter(rt: Runtime, name: str) -> float:
    with rt.sessions() as session:
        return sum(session.scalars(select(OpsCounter.value).where(OpsCounter.name == name)))


def test_a_commit_whose_reply_was_lost_counts_its_sends_once(
        runtime: Runtime, smtp: SmtpRecorder, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    issue_id, emails = lost_reply_issue(runtime, backend, 70)
    agent = DeliveryAgent(with_settings(runtime, send_batch_size=40))
    lost = LostReplies(monkeypatch)
    agent.deliver(issue_id)
    assert lost.lost >= 3
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert issue_status(runtime, issue_id) is IssueStatus.SENT
    assert counter(runtime, metrics.SENT) == 70
    assert counter(runtime, metrics.SEND_SECONDS + "_count") == 70


def test_a_claim_whose_reply_was_lost_sends_its_rows_at_once(
        runtime: Runtime, smtp: SmtpRecorder, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    # The claim (one statement in autocommit) lands and its reply is lost: run again, it
    # must not leave the rows it took under its name until their lease runs out.
    issue_id, emails = lost_reply_issue(runtime, backend, 70)
    agent = DeliveryAgent(with_settings(runtime, send_batch_size=40))
    real = ledger.claim_in_one_statement
    lost: list[int] = []

    def claim_then_lose_the_reply(*args: Any, **kwargs: Any) -> list[Recipient]:
        found = real(*args, **kwargs)
        if not lost:
            lost.append(len(found))
            raise OperationalError("claim", {}, ConnectionError("server closed the connection"))
        return found

    monkeypatch.setattr(ledger, "claim_in_one_statement", claim_then_lose_the_reply)
    monkeypatch.setattr(sender, "RETRY_FIRST_SECONDS", 0.01)
    report = agent.deliver(issue_id)
    assert lost == [40]
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert report.finished and issue_status(runtime, issue_id) is IssueStatus.SENT


def test_a_refused_connection_run_again_is_one_incident(
        runtime: Runtime, smtp: SmtpRecorder, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    issue_id, _ = lost_reply_issue(runtime, backend, 4)
    smtp.faults.greeting_421 = 1
    lost = LostReplies(monkeypatch)
    DeliveryAgent(runtime).deliver(issue_id)
    assert lost.lost >= 1
    assert {r.status for r in rows(runtime, issue_id).values()} == {DeliveryStatus.DEFERRED}
    with runtime.sessions() as session:
        kinds = list(session.scalars(select(Incident.kind)))
    assert kinds.count(incidents.CONNECTION_FAILED) == 1


def test_rcpt_421_pauses_the_whole_domain(runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, slow = start(runtime, 3, domain="slow.test", prefix="s")
    with unit_of_work(runtime.sessions) as session:
        fast = add_subscribers(session, 3, domain="fast.test", prefix="f")
        session.execute(update(Issue).where(Issue.id == issue_id).values(status=IssueStatus.DRAFT))
        session.execute(delete(Delivery))
    with unit_of_work(runtime.sessions) as session:
        ledger.start_send(session, issue_id, utcnow(), timedelta(hours=1))
    smtp.faults.rcpt = {slow[0]: "421 4.7.0 too many messages, slow down"}
    agent = DeliveryAgent(with_settings(runtime, domain_slowdown_seconds=600))
    agent.deliver(issue_id)
    r = rows(runtime, issue_id)
    assert all(r[e].status is DeliveryStatus.SENT for e in fast)
    assert all(r[e].status is DeliveryStatus.DEFERRED for e in slow)
    # The other slow.test rows were never tried: the domain is paused for everybody.
    assert not any(e in smtp.counts() for e in slow)
    later = utcnow() + timedelta(seconds=500)
    assert all((r[e].next_attempt_at or utcnow()) > later for e in slow[1:])


def test_connection_dropped_after_the_final_dot_is_uncertain_and_on_record(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 4)
    smtp.faults.once = True
    smtp.faults.drop_after_dot = {emails[1]}
    DeliveryAgent(with_settings(runtime, resend_uncertain=False)).deliver(issue_id)
    r = rows(runtime, issue_id)
    # The server kept the message and never answered: a possible delivery, on record.
    assert r[emails[1]].status is DeliveryStatus.UNCERTAIN and r[emails[1]].uncertain_count == 1
    assert all(r[e].status is DeliveryStatus.SENT for e in (emails[0], emails[2], emails[3]))
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert issue_status(runtime, issue_id) is IssueStatus.SENT


def test_connection_dropped_mid_data_is_deferred_and_the_retry_sends_one_copy(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 3)
    # Larger than the client's send buffer (4 MB at most on Linux) plus the server's
    # 64 KB receive buffer: the "." cannot have reached the client's kernel when the
    # server aborts, which is the only way the client can know it was not delivered.
    filler = "".join(f"سطر {i} از گزارش بلند این هفته\n" for i in range(160_000))
    with unit_of_work(runtime.sessions) as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        issue.text = filler + issue.text
    assert len(filler.encode()) > 6_000_000
    smtp.faults.once = True
    smtp.faults.drop_mid_data = {emails[1]}
    agent = DeliveryAgent(with_settings(runtime, resend_uncertain=False))
    agent.deliver(issue_id)
    assert smtp.mid_data_drops == 1  # the server really cut the body off
    r = rows(runtime, issue_id)
    assert r[emails[1]].status is DeliveryStatus.DEFERRED and r[emails[1]].uncertain_count == 0
    assert r[emails[1]].next_attempt_at is not None
    assert smtp.counts()[emails[1]] == 0
    assert issue_status(runtime, issue_id) is IssueStatus.SENDING

    make_due(runtime, issue_id)
    agent.deliver(issue_id)
    r = rows(runtime, issue_id)
    assert r[emails[1]].status is DeliveryStatus.SENT and r[emails[1]].uncertain_count == 0
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert len(smtp.to(emails[1])[0].data) > 8_000_000
    assert issue_status(runtime, issue_id) is IssueStatus.SENT


def test_at_least_once_policy_resends_uncertain_rows_and_counts_the_duplicates(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 3)
    smtp.faults.once = True
    smtp.faults.drop_after_dot = {emails[0]}
    agent = DeliveryAgent(runtime)  # resend_uncertain defaults to True
    agent.deliver(issue_id)
    make_due(runtime, issue_id)
    agent.deliver(issue_id)
    r = rows(runtime, issue_id)
    assert r[emails[0]].status is DeliveryStatus.SENT and r[emails[0]].uncertain_count == 1
    counts = smtp.counts()
    for email in emails:
        assert counts[email] - 1 <= r[email].uncertain_count
    assert counts[emails[0]] == 2


def test_a_rate_limited_send_still_delivers_everyone_once(runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 90)
    agent = DeliveryAgent(with_settings(runtime, send_rate_per_second=40.0))
    assert agent.throttle.largest_chunk(100) == 40
    report = agent.deliver(issue_id)
    assert report.finished and smtp.counts() == Counter({e: 1 for e in emails})


def test_an_unreachable_smtp_server_defers_the_rows_and_gives_up_at_their_deadline(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    from service.delivery.transport import SmtpConnection
    from service.settings import SmtpTarget
    from tests.delivery.conftest import free_port

    issue_id, _ = start(runtime, 3)
    agent = DeliveryAgent(runtime)
    agent.connection = SmtpConnection(SmtpTarget(host="127.0.0.1", port=free_port()), timeout=2)
    report = agent.deliver(issue_id)
    assert report.outcomes["deferred"] == 3 and not report.finished
    r = rows(runtime, issue_id)
    assert all(x.status is DeliveryStatus.DEFERRED and "connect" in (x.last_error or "") for x in r.values())
    # Past the give-up time a further failure is final.
    with unit_of_work(runtime.sessions) as session:
        session.execute(update(Delivery).values(give_up_at=utcnow() - timedelta(seconds=1)))
    make_due(runtime, issue_id)
    agent.deliver(issue_id)
    assert {x.status for x in rows(runtime, issue_id).values()} == {DeliveryStatus.FAILED}
    assert issue_status(runtime, issue_id) is IssueStatus.SENT
    assert not smtp.counts()


def test_a_chunk_whose_marking_took_half_the_lease_is_not_sent_and_stays_untried(
        runtime: Runtime, smtp: SmtpRecorder, monkeypatch: Any) -> None:
    issue_id, emails = start(runtime, 10)
    agent = DeliveryAgent(with_settings(runtime, lease_seconds=2))
    mark = agent._record_and_mark

    def slow_mark(session: Any, **kwargs: Any) -> set[int]:
        ours = mark(session, **kwargs)
        time.sleep(1.2)  # the database answered slowly: more than half of the 2 s lease
        return ours

    monkeypatch.setattr(agent, "_record_and_mark", slow_mark)
    report = agent.deliver(issue_id)

    assert not report.finished and smtp.counts() == Counter()
    found = rows(runtime, issue_id)
    assert {r.status for r in found.values()} == {DeliveryStatus.QUEUED}
    assert {r.attempts for r in found.values()} == {0}
    with runtime.sessions() as session:  # anybody's to claim again
        assert ledger.has_due_rows(session, issue_id, ledger.database_now(session))
        assert ledger.leases(session, ledger.database_now(session)).held == 0

    monkeypatch.undo()
    assert DeliveryAgent(runtime).deliver(issue_id).finished
    assert smtp.counts() == Counter({e: 1 for e in emails})


def test_a_chunk_goes_out_over_several_connections_at_once_one_copy_each(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 90)
    agent = DeliveryAgent(with_settings(runtime, smtp_connections=3, send_batch_size=90))
    report = agent.deliver(issue_id)
    assert report.finished and report.outcomes == Counter(sent=90)
    assert smtp.counts() == Counter({e: 1 for e in emails})
    # Three 30-message chunks, each cut in three parts of ten, one per connection.
    peers = Counter(m.peer for m in smtp.messages)
    assert len(peers) == 3 and set(peers.values()) == {30}
    # Within a part the messages keep their order: each connection carried a run of
    # ten consecutive readers per chunk.
    by_peer: dict[object, list[str]] = {}
    for m in smtp.messages:
        by_peer.setdefault(m.peer, []).append(m.rcpt_tos[0])
    for received in by_peer.values():
        positions = [emails.index(e) for e in received]
        for k in range(0, 30, 10):
            run = positions[k:k + 10]
            assert run == list(range(run[0], run[0] + 10))


def test_a_connection_lost_in_one_part_leaves_the_other_parts_sent(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 30)
    smtp.faults.once = True
    smtp.faults.drop_after_dot = {emails[17]}  # in the second part of the only chunk
    agent = DeliveryAgent(with_settings(runtime, smtp_connections=2, resend_uncertain=False))
    agent.deliver(issue_id)
    r = rows(runtime, issue_id)
    assert r[emails[17]].status is DeliveryStatus.UNCERTAIN and r[emails[17]].uncertain_count == 1
    others = [e for e in emails if e != emails[17]]
    assert all(r[e].status is DeliveryStatus.SENT for e in others)
    assert smtp.counts() == Counter({e: 1 for e in emails})  # the rest of part two: sent later
    assert issue_status(runtime, issue_id) is IssueStatus.SENT


def test_an_extra_connection_that_cannot_open_does_not_hold_the_chunk_back(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id, emails = start(runtime, 40)
    agent = DeliveryAgent(with_settings(runtime, smtp_connections=2))
    extra = agent.extra[0]

    def refuse() -> None:
        raise SmtpError(None, "connection refused", "connect")

    extra.open = refuse  # type: ignore[method-assign]
    report = agent.deliver(issue_id)
    assert report.finished and report.outcomes == Counter(sent=40)
    assert smtp.counts() == Counter({e: 1 for e in emails})
    assert len({m.peer for m in smtp.messages}) == 1  # all over the first connection
    assert agent.extra_failed > 0


def test_a_send_holds_one_database_connection_for_its_chunks_and_gives_it_back(
        runtime: Runtime, smtp: SmtpRecorder, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("chunks are one statement each, on a held connection, on PostgreSQL only")
    issue_id, emails = start(runtime, 240)
    agent = DeliveryAgent(with_settings(runtime, send_batch_size=120))
    checkouts: list[int] = []

    def listener(*_: object) -> None:
        checkouts.append(1)

    event.listen(runtime.engine, "checkout", listener)
    try:
        report = agent.deliver(issue_id)
    finally:
        event.remove(runtime.engine, "checkout", listener)
    assert report.finished and smtp.counts() == Counter({e: 1 for e in emails})
    # Eight chunks and two claims, one statement each: taken from the pool once for
    # them all, not once each (ten); the transactions of the counters, the batches'
    # ends and the issue's end take their own.
    assert len(checkouts) <= 6, len(checkouts)
    assert runtime.engine.pool.checkedout() == 0  # given back when the task ended


@pytest.mark.parametrize("overflow", [0, 1])
def test_a_pool_of_one_or_two_connections_still_sends_everyone_once(
        runtime: Runtime, smtp: SmtpRecorder, backend: str, overflow: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The send holds its connection only when the pool can lend a second one (the lease
    # keeper's, another transaction's): with one connection in all it would wait for
    # itself, until the pool's timeout said the database was unreachable.
    if backend != "postgresql":
        pytest.skip("SQLite has no pool size")
    issue_id, emails = start(runtime, 90)
    small = Runtime.from_settings(runtime.settings.model_copy(update={
        "database_pool_size": 1, "database_max_overflow": overflow, "send_batch_size": 40,
        "lease_seconds": 2}))
    monkeypatch.setattr(sender, "OUTAGE_GIVE_UP_SECONDS", 5.0)
    try:
        agent = DeliveryAgent(small)
        real = agent._send_parts

        def slow_parts(*args: Any) -> Any:
            time.sleep(0.15)  # the lease keeper renews (every 0.1 s) while a chunk is out
            return real(*args)

        agent._send_parts = slow_parts  # type: ignore[method-assign]
        report = agent.deliver(issue_id)
    finally:
        small.close()
    assert report.finished and smtp.counts() == Counter({e: 1 for e in emails})
