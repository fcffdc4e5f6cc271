"""Taking reports in: what each one does to the subscriber and what it leaves on record."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.bounces.intake import SoftBouncePolicy, take_report
from service.bounces.verp import SUBSCRIBER, VerpSigner
from service.delivery.models import Bounce
from service.subscribers.models import Status, Subscriber, SubscriberEvent
from tests.bounces.factories import add_subscriber, sent_delivery
from tests.bounces.messages import GARBAGE, PLAIN_MAIL, arf_complaint, hard_bounce, soft_bounce
from tests.delivery.factories import NOW

SECRET = "test-secret-key-that-is-long-enough-0123456789"
SIGNER = VerpSigner(SECRET)
POLICY = SoftBouncePolicy(limit=3, window=timedelta(days=30))
LATER = NOW + timedelta(hours=2)


def bounces(session: Session) -> list[Bounce]:
    return list(session.scalars(select(Bounce).order_by(Bounce.id)))


def events(session: Session, subscriber_id: int) -> list[str]:
    return list(session.scalars(select(SubscriberEvent.kind).where(
        SubscriberEvent.subscriber_id == subscriber_id).order_by(SubscriberEvent.id)))


def test_a_hard_bounce_marks_the_subscriber_bounced_and_is_stored(session: Session) -> None:
    reader = add_subscriber(session, "gone@example.test")
    other = add_subscriber(session, "stays@example.test")
    delivery = sent_delivery(session, reader)
    sent_delivery(session, other)
    raw = hard_bounce(SIGNER.address(delivery.id, "chapar.test"), reader.email)

    intake = take_report(session, raw, SIGNER, LATER, POLICY, "api")

    assert (intake.outcome, intake.delivery_id, intake.subscriber_id) == ("hard", delivery.id,
                                                                          reader.id)
    session.refresh(reader)
    session.refresh(other)
    assert reader.status is Status.BOUNCED and reader.bounced_at == LATER
    assert other.status is Status.CONFIRMED
    [bounce] = bounces(session)
    assert (bounce.kind, bounce.delivery_id, bounce.subscriber_id, bounce.recipient) == (
        "hard", delivery.id, reader.id, "gone@example.test")
    assert bounce.detail is not None and "5.1.1" in bounce.detail
    assert events(session, reader.id) == ["bounce"]


def test_the_verp_token_survives_an_mta_that_upper_cases_it(session: Session) -> None:
    reader = add_subscriber(session, "loud@example.test")
    delivery = sent_delivery(session, reader)
    raw = hard_bounce(SIGNER.address(delivery.id, "chapar.test").upper(), reader.email)
    assert take_report(session, raw, SIGNER, LATER, POLICY, "api").subscriber_id == reader.id


def test_one_soft_bounce_counts_but_keeps_the_subscriber(session: Session) -> None:
    reader = add_subscriber(session, "full@example.test")
    delivery = sent_delivery(session, reader)
    verp = SIGNER.address(delivery.id, "chapar.test")

    first = take_report(session, soft_bounce(verp, reader.email), SIGNER, LATER, POLICY, "api")
    # The same delivery reported again (a "delayed" notice, then the final one) counts once.
    take_report(session, soft_bounce(verp, reader.email), SIGNER, LATER, POLICY, "api")

    assert first.outcome == "soft" and first.subscriber_status == "confirmed"
    session.refresh(reader)
    assert reader.status is Status.CONFIRMED
    assert reader.soft_bounces == 1
    assert [b.kind for b in bounces(session)] == ["soft", "soft"]


def test_soft_bounces_on_three_issues_in_the_window_mark_bounced(session: Session) -> None:
    reader = add_subscriber(session, "always-full@example.test")
    outcomes = []
    for number in (1, 2, 3):
        delivery = sent_delivery(session, reader, issue_number=number)
        raw = soft_bounce(SIGNER.address(delivery.id, "chapar.test"), reader.email)
        at = LATER + timedelta(days=7 * (number - 1))
        outcomes.append(take_report(session, raw, SIGNER, at, POLICY, "mailbox:imap")
                        .subscriber_status)
    assert outcomes == ["confirmed", "confirmed", "bounced"]
    session.refresh(reader)
    assert reader.soft_bounces == 3
    assert reader.status is Status.BOUNCED


def test_soft_bounces_spread_wider_than_the_window_do_not_add_up(session: Session) -> None:
    reader = add_subscriber(session, "sometimes-full@example.test")
    for number in (1, 2, 3):
        delivery = sent_delivery(session, reader, issue_number=number)
        raw = soft_bounce(SIGNER.address(delivery.id, "chapar.test"), reader.email)
        take_report(session, raw, SIGNER, LATER + timedelta(days=20 * number), POLICY, "api")
    session.refresh(reader)
    assert reader.status is Status.CONFIRMED


def test_an_arf_complaint_marks_the_subscriber_complained(session: Session) -> None:
    reader = add_subscriber(session, "annoyed@example.test")
    delivery = sent_delivery(session, reader)
    raw = arf_complaint(SIGNER.address(delivery.id, "chapar.test"), reader.email)

    intake = take_report(session, raw, SIGNER, LATER, POLICY, "mailbox:pop3")

    assert (intake.outcome, intake.subscriber_status) == ("complaint", "complained")
    session.refresh(reader)
    assert reader.status is Status.COMPLAINED and reader.complained_at == LATER
    assert [b.kind for b in bounces(session)] == ["complaint"]
    assert events(session, reader.id) == ["complaint"]


def test_a_report_for_an_unknown_or_forged_token_changes_nobody(session: Session) -> None:
    reader = add_subscriber(session, "victim@example.test")
    delivery = sent_delivery(session, reader)
    forged = SIGNER.address(delivery.id, "chapar.test").replace("-", "-x", 1)
    unknown = SIGNER.address(delivery.id + 1000, "chapar.test")  # well signed, no such row

    results = [take_report(session, hard_bounce(v, reader.email), SIGNER, LATER, POLICY, "api")
               for v in (forged, unknown, "bounces@chapar.test")]

    assert [r.outcome for r in results] == ["unmatched"] * 3
    session.refresh(reader)
    assert reader.status is Status.CONFIRMED
    stored = bounces(session)
    assert len(stored) == 3
    assert all(b.delivery_id is None and b.subscriber_id is None for b in stored)
    assert all(b.recipient == "victim@example.test" for b in stored)


def test_garbage_and_ordinary_mail_store_nothing(session: Session) -> None:
    reader = add_subscriber(session, "reader@example.test")
    sent_delivery(session, reader)
    for raw in (GARBAGE, PLAIN_MAIL):
        assert take_report(session, raw, SIGNER, LATER, POLICY, "api").outcome == "not_a_report"
    assert bounces(session) == []


def test_a_bounce_for_an_erased_subscriber_is_kept_anonymous(session: Session) -> None:
    reader = add_subscriber(session, "erased@example.test")
    delivery = sent_delivery(session, reader)
    session.delete(reader)
    session.flush()
    session.refresh(delivery)
    assert delivery.subscriber_id is None
    intake = take_report(session, hard_bounce(SIGNER.address(delivery.id, "chapar.test"),
                                              "erased@example.test"), SIGNER, LATER, POLICY, "api")
    assert intake.outcome == "unmatched"
    assert session.scalar(select(Subscriber.id)) is None


def test_a_bounce_of_a_confirmation_marks_its_subscriber_and_a_soft_one_is_only_kept(
        session: Session) -> None:
    gone = add_subscriber(session, "pending-gone@example.test")
    full = add_subscriber(session, "pending-full@example.test")
    hard = hard_bounce(SIGNER.address(gone.id, "chapar.test", SUBSCRIBER), gone.email)
    soft = soft_bounce(SIGNER.address(full.id, "chapar.test", SUBSCRIBER), full.email)

    results = [take_report(session, raw, SIGNER, LATER, POLICY, "mailbox") for raw in (hard, soft)]

    assert [(r.outcome, r.subscriber_id, r.delivery_id) for r in results] == [
        ("hard", gone.id, None), ("soft", full.id, None)]
    session.refresh(gone)
    session.refresh(full)
    assert gone.status is Status.BOUNCED and full.status is Status.CONFIRMED
    assert full.soft_bounces == 0  # the soft-bounce policy counts digests
    assert [(b.subscriber_id, b.delivery_id) for b in bounces(session)] == [(gone.id, None),
                                                                            (full.id, None)]
