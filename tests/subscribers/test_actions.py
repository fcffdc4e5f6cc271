"""Staff acting on one reader: the reader's own store functions, audited by id, never by address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.models import AuditEntry
from service.subscribers import actions, emails, store
from service.subscribers.importer import ImportReport, import_batch
from service.subscribers.models import Status, Subscriber, SubscriberEvent
from service.subscribers.search import ReaderFilter
from tests.subscribers.factories import make
from tests.subscribers.rings import rung
from tests.support.smtp import SmtpRecorder

STAFF = Actor(None, "boss@example.com", "203.0.113.7")


def audit_entries(rt: Runtime) -> list[tuple[str, str, str, str]]:
    with rt.sessions() as session:
        return [(e.actor, e.action, e.target, e.detail)
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def status_of(rt: Runtime, subscriber_id: int) -> Status | None:
    with rt.sessions() as session:
        found = session.get(Subscriber, subscriber_id)
        return found.status if found else None


def test_unsubscribe_is_the_readers_own_and_audited_once(runtime: Runtime) -> None:
    sid = make(runtime, "reader@example.com", Status.CONFIRMED)
    actions.unsubscribe(runtime, STAFF, sid, utcnow())
    assert status_of(runtime, sid) is Status.UNSUBSCRIBED
    with runtime.sessions() as session:
        last = session.scalars(select(SubscriberEvent).where(SubscriberEvent.subscriber_id == sid)
                               .order_by(SubscriberEvent.id.desc())).first()
        assert last is not None and (last.kind, last.source) == ("unsubscribe", "staff:boss@example.com")
    with pytest.raises(actions.ActionRefused) as again:
        actions.unsubscribe(runtime, STAFF, sid, utcnow())
    assert again.value.reason == "unchanged"
    assert audit_entries(runtime) == [
        ("boss@example.com", "subscriber.unsubscribe", f"subscriber:{sid}", "was confirmed")]


def test_resend_follows_the_one_a_day_rule_and_sends_through_the_usual_path(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    sid = make(runtime, "waiting@example.com", Status.PENDING)  # its subscribe was owed an email
    with pytest.raises(actions.ActionRefused) as refused:
        actions.resend_confirmation(runtime, STAFF, sid, utcnow())
    assert refused.value.reason == "too-soon" and refused.value.until is not None
    assert refused.value.until > utcnow() + timedelta(hours=23)
    assert audit_entries(runtime) == []

    tomorrow = utcnow() + timedelta(days=1, minutes=1)
    before = len(rung(runtime.settings))
    actions.resend_confirmation(runtime, STAFF, sid, tomorrow)
    assert rung(runtime.settings)[before:] == [[sid]]  # the confirmation worker is rung
    assert audit_entries(runtime) == [
        ("boss@example.com", "subscriber.resend_confirmation", f"subscriber:{sid}", "")]
    # What the rung worker does: the one confirmation sender mails it.
    assert emails.send_confirmation(runtime, sid, tomorrow)
    assert len(smtp.to("waiting@example.com")) == 1
    with pytest.raises(actions.ActionRefused) as twice:
        actions.resend_confirmation(runtime, STAFF, sid, tomorrow + timedelta(hours=1))
    assert twice.value.reason == "too-soon"


def test_only_a_pending_reader_is_sent_a_confirmation(runtime: Runtime) -> None:
    sid = make(runtime, "member@example.com", Status.CONFIRMED)
    with pytest.raises(actions.ActionRefused) as refused:
        actions.resend_confirmation(runtime, STAFF, sid, utcnow() + timedelta(days=2))
    assert refused.value.reason == "not-pending"


def test_erase_leaves_a_suppression_no_import_lifts_and_no_address_in_the_audit(runtime: Runtime) -> None:
    sid = make(runtime, "gone@example.com", Status.CONFIRMED)
    actions.erase(runtime, STAFF, sid, utcnow())
    assert status_of(runtime, sid) is None
    with unit_of_work(runtime.sessions) as session:
        assert store.is_erased(session, "gone@example.com")
        report = ImportReport()
        import_batch(session, [(2, "Gone@Example.com")], source="import:old.csv", status=Status.CONFIRMED,
                     now=utcnow(), report=report)
    assert (report.added, report.suppressed) == (0, 1)
    [entry] = audit_entries(runtime)
    assert entry[1:3] == ("subscriber.erase", f"subscriber:{sid}")
    assert "gone" not in " ".join(entry)
    with pytest.raises(actions.ActionRefused) as again:
        actions.erase(runtime, STAFF, sid, utcnow())
    assert again.value.reason == "missing"


def test_an_address_is_found_in_any_form_it_was_typed(runtime: Runtime) -> None:
    sid = make(runtime, "sara@example.com", Status.CONFIRMED)
    assert actions.find_id(runtime, "  Sara@EXAMPLE.com ") == sid
    with pytest.raises(actions.ActionRefused):
        actions.find_id(runtime, "nobody@example.com")


def test_an_export_is_audited_with_its_filter(runtime: Runtime) -> None:
    chosen = ReaderFilter.from_text(runtime.settings.tz, address="sara", status="pending",
                                    joined_from="1405/09/08")
    actions.record_export(runtime, STAFF, chosen, utcnow())
    assert audit_entries(runtime) == [
        ("boss@example.com", "subscribers.export", "subscribers",
         "address~sara status=pending joined>=2026-11-28T20:30:00+00:00")]
