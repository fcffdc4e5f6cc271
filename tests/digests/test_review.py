"""An issue's states and who may move it, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.delivery.models import Delivery
from service.digests import review
from service.digests.models import Issue, IssueStatus
from service.digests.review import Blocked, Checker, ReviewError
from service.runtime import Runtime
from service.settings import Settings
from service.staff.audit import Actor
from service.staff.permissions import NotPermitted, Who
from tests.delivery.factories import add_subscribers, make_issue

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday
RETRY = timedelta(hours=48)
EDITOR = Who(Actor(None, "editor@example.com", "test"), "editor")
CHIEF = Who(Actor(None, "chief@example.com", "test"), "chief-editor")
ADMIN = Who(Actor(None, "admin@example.com", "test"), "admin")
VIEWER = Who(Actor(None, "viewer@example.com", "test"), "viewer")
CLEAN: Checker = lambda session, issue: []  # noqa: E731
TOO_BIG = "پیام بزرگ‌تر از حد Gmail است | the message is larger than Gmail shows"
BLOCKING: Checker = lambda session, issue: [TOO_BIG]  # noqa: E731


def actions(session: Session, issue: Issue) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in review.history(session, issue)]


def test_an_issue_goes_from_draft_through_review_to_sending(session: Session) -> None:
    add_subscribers(session, 4)
    issue = make_issue(session, 7)
    review.request_review(session, issue, EDITOR, NOW, CLEAN)
    assert issue.status is IssueStatus.IN_REVIEW
    review.approve(session, issue, CHIEF, NOW)
    assert issue.status is IssueStatus.APPROVED
    rows = review.send_now(session, issue, CHIEF, NOW, RETRY, CLEAN)
    assert rows == 4 and issue.status is IssueStatus.SENDING
    assert session.scalar(select(func.count()).select_from(Delivery)) == 4
    assert actions(session, issue) == [
        ("issue.request_review", "editor@example.com"), ("issue.approve", "chief@example.com"),
        ("issue.send", "chief@example.com")]


@pytest.mark.parametrize(("who", "allowed"), [(EDITOR, False), (VIEWER, False), (CHIEF, True),
                                             (ADMIN, True)])
def test_only_approvers_approve(session: Session, who: Who, allowed: bool) -> None:
    issue = make_issue(session, 1, IssueStatus.IN_REVIEW)
    if allowed:
        review.approve(session, issue, who, NOW)
        assert issue.status is IssueStatus.APPROVED
    else:
        with pytest.raises(NotPermitted):
            review.approve(session, issue, who, NOW)
        assert issue.status is IssueStatus.IN_REVIEW


def test_an_editor_cannot_send_and_a_viewer_cannot_ask_for_review(session: Session) -> None:
    issue = make_issue(session, 1, IssueStatus.APPROVED)
    with pytest.raises(NotPermitted):
        review.send_now(session, issue, EDITOR, NOW, RETRY, CLEAN)
    draft = make_issue(session, 2)
    with pytest.raises(NotPermitted):
        review.request_review(session, draft, VIEWER, NOW, CLEAN)
    assert (issue.status, draft.status) == (IssueStatus.APPROVED, IssueStatus.DRAFT)


def test_moves_out_of_order_are_refused_in_persian(session: Session) -> None:
    draft = make_issue(session, 1)
    with pytest.raises(ReviewError) as refused:
        review.approve(session, draft, CHIEF, NOW)
    assert "پیش‌نویس" in refused.value.persian and "draft" in str(refused.value)
    with pytest.raises(ReviewError):
        review.send_now(session, draft, CHIEF, NOW, RETRY, CLEAN)  # not approved: never sent
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_blockers_stop_the_review_request_unless_an_admin_overrides(session: Session) -> None:
    issue = make_issue(session, 1)
    with pytest.raises(Blocked) as blocked:
        review.request_review(session, issue, EDITOR, NOW, BLOCKING)
    assert "Gmail" in blocked.value.persian and issue.status is IssueStatus.DRAFT
    with pytest.raises(ReviewError):
        review.request_review(session, issue, CHIEF, NOW, BLOCKING, override=True)
    assert issue.status is IssueStatus.DRAFT
    review.request_review(session, issue, ADMIN, NOW, BLOCKING, override=True)
    assert issue.status is IssueStatus.IN_REVIEW
    [override] = [e for e in review.history(session, issue) if e.action == "issue.checks_override"]
    assert override.actor == "admin@example.com" and TOO_BIG in override.detail


def test_blockers_stop_the_send_start_too(session: Session) -> None:
    add_subscribers(session, 2)
    issue = make_issue(session, 1, IssueStatus.APPROVED)
    with pytest.raises(Blocked):
        review.send_now(session, issue, CHIEF, NOW, RETRY, BLOCKING)
    assert issue.status is IssueStatus.APPROVED
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0


@pytest.mark.parametrize("state", [IssueStatus.IN_REVIEW, IssueStatus.APPROVED, IssueStatus.SCHEDULED])
def test_an_edit_after_the_request_returns_the_issue_to_draft(session: Session,
                                                              state: IssueStatus) -> None:
    issue = make_issue(session, 1, state)
    issue.scheduled_for = NOW + timedelta(days=1)
    review.note_edit(session, issue, EDITOR.actor, NOW, "subject")
    assert issue.status is IssueStatus.DRAFT and issue.scheduled_for is None
    assert [a for a, _ in actions(session, issue)] == ["issue.back_to_draft", "issue.edit"]


def test_a_draft_edit_is_audited_and_a_sent_issue_cannot_be_edited(session: Session) -> None:
    draft = make_issue(session, 1)
    review.note_edit(session, draft, EDITOR.actor, NOW, "moved an article")
    assert [(e.action, e.detail) for e in review.history(session, draft)] == [
        ("issue.edit", "moved an article")]
    sent = make_issue(session, 2, IssueStatus.SENT)
    with pytest.raises(ReviewError):
        review.note_edit(session, sent, EDITOR.actor, NOW)


def test_sending_back_needs_a_comment_and_keeps_it_in_the_history(session: Session) -> None:
    issue = make_issue(session, 1, IssueStatus.IN_REVIEW)
    with pytest.raises(ReviewError):
        review.send_back(session, issue, CHIEF, NOW, "   ")
    review.send_back(session, issue, CHIEF, NOW, "تیتر نخست را عوض کنید.")
    assert issue.status is IssueStatus.DRAFT
    [entry] = review.history(session, issue)
    assert entry.action == "issue.send_back" and "تیتر نخست را عوض کنید." in entry.detail


def test_scheduling_defaults_to_the_next_slot_and_refuses_the_past(session: Session,
                                                                   settings: Settings) -> None:
    issue = make_issue(session, 1, IssueStatus.APPROVED)
    with pytest.raises(ReviewError):
        review.schedule(session, settings, issue, CHIEF, NOW, NOW - timedelta(minutes=1))
    when = review.schedule(session, settings, issue, CHIEF, NOW)
    assert when == datetime(2026, 11, 27, 4, 30, tzinfo=UTC)  # Friday 08:00 in Tehran
    assert issue.status is IssueStatus.SCHEDULED and issue.scheduled_for == when
    chosen = NOW + timedelta(hours=3)
    assert review.schedule(session, settings, issue, CHIEF, NOW, chosen) == chosen
    with pytest.raises(NotPermitted):
        review.schedule(session, settings, issue, EDITOR, NOW, chosen)


def test_the_panel_offers_each_person_only_their_moves(session: Session) -> None:
    issue = make_issue(session, 1, IssueStatus.APPROVED)
    assert review.actions_for(issue, EDITOR) == []
    assert review.actions_for(issue, CHIEF) == ["send-back", "schedule", "send-now"]
    issue.status = IssueStatus.DRAFT
    assert review.actions_for(issue, EDITOR) == ["request"]
    assert review.actions_for(issue, VIEWER) == []



@pytest.fixture
def settings(runtime: Runtime) -> Settings:
    return runtime.settings
