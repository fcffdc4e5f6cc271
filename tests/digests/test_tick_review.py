"""The beat's tick with review: a draft ahead of the slot, held when not approved, sent when approved."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service.db import unit_of_work
from service.delivery.models import Delivery
from service.digests import review, weekly
from service.digests.models import Issue, IssueStatus, ScheduleSlot
from service.digests.review import Checker
from service.digests.schedule import run_tick
from service.runtime import Runtime
from service.staff.audit import Actor
from service.staff.permissions import COMMAND_LINE, Who
from tests.delivery.factories import add_subscribers, make_issue
from tests.digests.test_schedule import CLEAN, FRIDAY_0800_TEHRAN, fake_builder
from tests.staff.factories import staff_account
from tests.support.smtp import SmtpRecorder

SLOT = FRIDAY_0800_TEHRAN
CHIEF = Who(Actor(None, "chief@example.com", "test"), "chief-editor")
BLOCKING: Checker = lambda session, issue: ["پیام بریده می‌شود | the message is clipped"]  # noqa: E731


def with_settings(rt: Runtime, **changes: object) -> Runtime:
    return Runtime(settings=rt.settings.model_copy(update=changes), engine=rt.engine,
                   sessions=rt.sessions, tokens=rt.tokens)


def deliveries(rt: Runtime) -> int:
    with rt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def slot_outcome(rt: Runtime) -> tuple[str, str | None]:
    with rt.sessions() as session:
        slot = session.scalars(select(ScheduleSlot).where(ScheduleSlot.slot_at == SLOT)).one()
        return slot.outcome, slot.reason


def status_of(rt: Runtime, number: int) -> IssueStatus:
    with rt.sessions() as session:
        return review.find(session, number).status


def staff(rt: Runtime) -> None:
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 3)
        staff_account(session, "editor@example.com", "editor")
        staff_account(session, "chief@example.com", "chief-editor")
        staff_account(session, "ops@example.com", "ops")  # may not prepare: not told


def test_the_draft_is_built_a_day_ahead_of_the_slot_once(runtime: Runtime) -> None:
    calls: list = []
    build = fake_builder(calls)
    assert run_tick(runtime, SLOT - timedelta(hours=25), build, CLEAN).drafted is None
    first = run_tick(runtime, SLOT - timedelta(hours=23), build, CLEAN)
    again = run_tick(runtime, SLOT - timedelta(hours=22), build, CLEAN)
    assert first.drafted == 1 and again.drafted is None and calls == [SLOT]
    assert slot_outcome(runtime)[0] == "drafted"
    assert status_of(runtime, 1) is IssueStatus.DRAFT and deliveries(runtime) == 0


def test_an_unapproved_issue_is_held_at_its_slot_and_the_editors_are_told(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    staff(runtime)
    run_tick(runtime, SLOT - timedelta(hours=23), fake_builder([]), CLEAN)
    result = run_tick(runtime, SLOT + timedelta(seconds=30), fake_builder([]), CLEAN)
    assert result.started == () and [h.number for h in result.held] == [1]
    assert deliveries(runtime) == 0 and status_of(runtime, 1) is IssueStatus.DRAFT
    outcome, reason = slot_outcome(runtime)
    assert outcome == "held" and "not approved" in (reason or "")
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == [
        "chief@example.com", "editor@example.com"]
    mail = smtp.messages[0].message
    assert "۱" in str(mail["Subject"]) and "فرستاده نشد" in str(mail["Subject"])
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "تأیید نشده" in text and "/desk/issues/1" in text
    # The next tick of the same slot does nothing again: one email per editor.
    run_tick(runtime, SLOT + timedelta(minutes=1), fake_builder([]), CLEAN)
    assert len(smtp.messages) == 2


def test_an_approved_issue_is_sent_by_the_tick_at_its_slot(runtime: Runtime, smtp: SmtpRecorder) -> None:
    staff(runtime)
    run_tick(runtime, SLOT - timedelta(hours=23), fake_builder([]), CLEAN)
    with unit_of_work(runtime.sessions) as session:
        issue = review.find(session, 1)
        review.request_review(session, issue, COMMAND_LINE, SLOT - timedelta(hours=5), CLEAN)
        review.approve(session, issue, CHIEF, SLOT - timedelta(hours=4))
    before = run_tick(runtime, SLOT - timedelta(minutes=1), fake_builder([]), CLEAN)
    assert before.started == () and deliveries(runtime) == 0
    result = run_tick(runtime, SLOT + timedelta(seconds=10), fake_builder([]), CLEAN)
    assert result.started == ((result.issue_id, 3),) and result.held == ()
    assert status_of(runtime, 1) is IssueStatus.SENDING and deliveries(runtime) == 3
    assert slot_outcome(runtime) == ("sent", None)
    assert smtp.messages == []  # nobody is told anything was held


def test_blockers_hold_an_approved_issue_at_its_slot(runtime: Runtime, smtp: SmtpRecorder) -> None:
    staff(runtime)
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, 1, IssueStatus.APPROVED)
    result = run_tick(runtime, SLOT + timedelta(seconds=10), fake_builder([]), BLOCKING)
    assert result.started == () and deliveries(runtime) == 0
    assert status_of(runtime, 1) is IssueStatus.APPROVED
    outcome, reason = slot_outcome(runtime)
    assert outcome == "blocked" and "clipped" in (reason or "")
    assert len(smtp.messages) == 2
    assert "پیام بریده می‌شود" in smtp.messages[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_automatic_sending_sends_a_draft_but_the_checks_still_run(runtime: Runtime) -> None:
    rt = with_settings(runtime, digest_auto_send=True)
    staff(rt)
    with unit_of_work(rt.sessions) as session:
        make_issue(session, 1)
    blocked = run_tick(rt, SLOT + timedelta(seconds=10), fake_builder([]), BLOCKING)
    assert blocked.started == () and slot_outcome(rt)[0] == "blocked"
    with unit_of_work(rt.sessions) as session:
        session.execute(ScheduleSlot.__table__.delete())
    sent = run_tick(rt, SLOT + timedelta(seconds=20), fake_builder([]), CLEAN)
    assert status_of(rt, 1) is IssueStatus.SENDING and sent.rows == 3


def test_a_scheduled_issue_goes_at_its_chosen_time_not_at_the_slot(runtime: Runtime) -> None:
    staff(runtime)
    chosen = SLOT + timedelta(hours=2)
    with unit_of_work(runtime.sessions) as session:
        issue = make_issue(session, 1, IssueStatus.APPROVED)
        review.schedule(session, runtime.settings, issue, CHIEF, SLOT - timedelta(days=1), chosen)
    at_slot = run_tick(runtime, SLOT + timedelta(seconds=5), fake_builder([]), CLEAN)
    assert at_slot.started == () and at_slot.held == () and slot_outcome(runtime)[0] == "scheduled"
    assert run_tick(runtime, chosen - timedelta(minutes=1), fake_builder([]), CLEAN).started == ()
    sent = run_tick(runtime, chosen + timedelta(seconds=5), fake_builder([]), CLEAN)
    assert sent.rows == 3 and status_of(runtime, 1) is IssueStatus.SENDING


def test_a_skipped_week_sends_nothing_and_builds_nothing(runtime: Runtime, smtp: SmtpRecorder) -> None:
    staff(runtime)
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, 1, IssueStatus.APPROVED)
        weekly.skip(session, runtime.settings, COMMAND_LINE, SLOT, SLOT - timedelta(days=2))
    calls: list = []
    assert run_tick(runtime, SLOT - timedelta(hours=23), fake_builder(calls), CLEAN).drafted is None
    result = run_tick(runtime, SLOT + timedelta(seconds=5), fake_builder(calls), CLEAN)
    assert result.started == () and calls == [] and deliveries(runtime) == 0
    assert slot_outcome(runtime)[0] == "skipped" and smtp.messages == []


def test_the_slot_set_on_the_desk_is_the_one_the_tick_keeps(runtime: Runtime) -> None:
    staff(runtime)
    thursday_2000 = SLOT - timedelta(hours=12)  # Thursday 20:00 in Tehran
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, 1, IssueStatus.APPROVED)
        weekly.set_weekly(session, COMMAND_LINE, 3, 20, 0, SLOT - timedelta(days=3))
    result = run_tick(runtime, thursday_2000 + timedelta(seconds=5), fake_builder([]), CLEAN)
    assert result.slot_at == thursday_2000 and result.rows == 3
    with runtime.sessions() as session:
        assert session.scalar(select(Issue.status)) is IssueStatus.SENDING
