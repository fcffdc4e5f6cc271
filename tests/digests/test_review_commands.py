"""`chapar digest review|approve|send-back|schedule|send-now` and `chapar schedule show|set|skip`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from service.cli import main
from service.db import unit_of_work
from service.delivery.models import Delivery
from service.digests import review
from service.digests.models import IssueStatus, ScheduleSlot
from service.runtime import Runtime
from tests.delivery.factories import add_subscribers, make_issue
from tests.staff.factories import staff_account
from tests.support.processes import settings_env
from tests.support.smtp import SmtpRecorder


def chapar(rt: Runtime, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=settings_env(rt.settings))


def status_of(rt: Runtime, number: int) -> IssueStatus:
    with rt.sessions() as session:
        return review.find(session, number).status


@pytest.fixture
def issue(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, smtp: SmtpRecorder) -> Runtime:
    monkeypatch.setattr(review, "run_checks_hook", lambda rt, session, issue: [])
    with unit_of_work(runtime.sessions) as session:
        add_subscribers(session, 2)
        staff_account(session, "editor@example.com", "editor")
        make_issue(session, 5)
    return runtime


def test_the_same_rules_on_the_command_line(issue: Runtime) -> None:
    rt = issue
    assert chapar(rt, "digest", "approve", "5").exit_code == 1  # a draft is not approved
    assert chapar(rt, "digest", "review", "5", "--as", "editor@example.com").exit_code == 0
    refused = chapar(rt, "digest", "approve", "5", "--as", "editor@example.com")
    assert refused.exit_code == 1 and "issues.approve" in refused.output
    assert status_of(rt, 5) is IssueStatus.IN_REVIEW
    back = chapar(rt, "digest", "send-back", "5", "--comment", "عنوان کوتاه‌تر")
    assert back.exit_code == 0 and status_of(rt, 5) is IssueStatus.DRAFT
    chapar(rt, "digest", "review", "5")
    assert chapar(rt, "digest", "approve", "5").exit_code == 0
    scheduled = chapar(rt, "digest", "schedule", "5", "--at", "2099-01-02T08:00")
    assert scheduled.exit_code == 0 and "2099-01-02T08:00:00+03:30" in scheduled.output
    sent = chapar(rt, "digest", "send-now", "5")
    assert sent.exit_code == 0, sent.output
    assert status_of(rt, 5) is IssueStatus.SENDING
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
    assert "5  sending" in chapar(rt, "digest", "list").output


def test_blockers_end_the_review_command_with_the_reason(issue: Runtime,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "run_checks_hook",
                        lambda rt, session, issue: ["موضوع خالی است | the subject is empty"])
    refused = chapar(issue, "digest", "review", "5")
    assert refused.exit_code == 1 and "موضوع خالی است" in refused.output
    assert status_of(issue, 5) is IssueStatus.DRAFT
    assert chapar(issue, "digest", "review", "5", "--override").exit_code == 0


def test_schedule_show_set_and_skip(issue: Runtime) -> None:
    assert chapar(issue, "schedule", "set", "thu", "20:30").exit_code == 0
    shown = chapar(issue, "schedule", "show").output
    assert "weekly: thu 20:30 (Asia/Tehran)" in shown and "پنجشنبه" in shown
    first = shown.splitlines()[1].split()[0][:10]
    assert chapar(issue, "schedule", "skip", first).exit_code == 0
    assert "[skipped]" in chapar(issue, "schedule", "show").output
    with issue.sessions() as session:
        assert session.scalars(select(ScheduleSlot.outcome)).one() == "skipped"
    assert chapar(issue, "schedule", "skip", first, "--undo").exit_code == 0
    refused = chapar(issue, "schedule", "set", "thu", "20:30", "--as", "editor@example.com")
    assert refused.exit_code == 1 and "staff.manage" in refused.output
