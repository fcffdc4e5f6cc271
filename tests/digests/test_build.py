"""Building an issue: a snapshot of its articles, stored rendered, as a draft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import ledger
from service.digests.build import build_issue, rerender_issue
from service.digests.models import Issue, IssueStatus
from service.mail.placeholders import UNSUBSCRIBE_URL
from service.runtime import Runtime
from service.settings import Settings
from tests.digests.factories import article, sent_issue
from tests.support.databases import waits_for_a_lock
from tests.support.threads import in_thread

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


def test_a_built_issue_is_a_rendered_draft_with_the_next_number(session: Session) -> None:
    settings = Settings(environment="test", public_url="http://chapar.test")
    article(session, NOW - timedelta(days=9))
    first = sent_issue(session, settings, NOW - timedelta(days=7))
    article(session, NOW - timedelta(hours=1), title="تازه")
    slot = NOW - timedelta(minutes=5)
    second = build_issue(session, settings, NOW, slot_at=slot, intro="سلام، يك هفته ديگر").issue
    assert first is not None and second is not None
    assert (first.number, second.number) == (1, 2)
    assert second.status is IssueStatus.DRAFT and second.created_at == NOW
    assert second.window_start == first.window_end and second.window_end == slot
    assert second.intro == "سلام، یک هفته دیگر"
    assert "سلام، یک هفته دیگر" in second.html and "سلام، یک هفته دیگر" in second.text
    assert UNSUBSCRIBE_URL in second.html and "http://chapar.test/archive/2" in second.html


def test_later_edits_to_an_article_do_not_change_the_issue(session: Session) -> None:
    settings = Settings(environment="test")
    source = article(session, NOW - timedelta(hours=1), title="عنوان نخست")
    issue = build_issue(session, settings, NOW).issue
    assert issue is not None
    html = issue.html
    source.title = "عنوان ویرایش‌شده"
    source.summary_html = "متن تازه"
    session.flush()
    session.expire_all()
    assert [a.title for a in issue.articles] == ["عنوان نخست"]
    rerender_issue(session, issue, settings)
    assert issue.html == html and "ویرایش‌شده" not in issue.html


def test_a_build_leaves_alone_a_draft_whose_send_starts_while_it_runs(pg_runtime: Runtime) -> None:
    settings = Settings(environment="test")
    with unit_of_work(pg_runtime.sessions) as session:
        article(session, NOW - timedelta(hours=2))
        draft = build_issue(session, settings, NOW).issue
        assert draft is not None
        draft_id = draft.id
    with unit_of_work(pg_runtime.sessions) as sending:
        assert ledger.start_send(sending, draft_id, NOW, timedelta(hours=48)) == 0

        def build() -> None:
            with unit_of_work(pg_runtime.sessions) as session:
                article(session, NOW + timedelta(hours=1))
                built = build_issue(session, settings, NOW + timedelta(days=1))
                assert built.issue is not None and built.replaced == ()

        thread, errors = in_thread(build)
        # the build reads the draft before the send commits, then waits for its lock
        assert waits_for_a_lock(pg_runtime.engine, "transactionid")
    thread.join(10)
    assert not thread.is_alive() and errors == []
    with pg_runtime.sessions() as session:
        issues = session.scalars(select(Issue).order_by(Issue.number)).all()
        assert [(i.number, i.status) for i in issues] == [(1, IssueStatus.SENDING),
                                                         (2, IssueStatus.DRAFT)]
        # the next issue starts where the sending one ends: none of its articles again
        assert [len(i.articles) for i in issues] == [1, 1]


def test_two_builds_at_once_leave_one_draft_under_the_next_number(pg_runtime: Runtime) -> None:
    # The schedule's build and an editor's can meet. Without the build lock, both took
    # number 1 and the second failed on its uniqueness once the first committed.
    settings = Settings(environment="test")
    with unit_of_work(pg_runtime.sessions) as session:
        article(session, NOW - timedelta(hours=2))
    with unit_of_work(pg_runtime.sessions) as first:
        assert build_issue(first, settings, NOW).issue is not None

        def second_build() -> None:
            with unit_of_work(pg_runtime.sessions) as session:
                built = build_issue(session, settings, NOW + timedelta(minutes=1))
                assert built.issue is not None and built.replaced == (1,)

        thread, errors = in_thread(second_build)
        assert waits_for_a_lock(pg_runtime.engine)  # for the first build to commit
    thread.join(10)
    assert not thread.is_alive() and errors == []
    with pg_runtime.sessions() as session:
        issues = session.scalars(select(Issue)).all()
        assert [(i.number, i.status, len(i.articles)) for i in issues] == [
            (1, IssueStatus.DRAFT, 1)]
