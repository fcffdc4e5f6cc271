"""Build the next digest issue: choose, snapshot, render once, store as a draft.

The caller owns the transaction: the weekly schedule records its slot in the same
one, and `chapar digest build` commits it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import is_sqlite
from service.digests.choose import choose_articles
from service.digests.models import BUILD_LOCK, Issue, IssueArticle, IssueStatus
from service.digests.render import digest_context, issue_preheader, issue_subject, render_digest
from service.persian import normalize_text
from service.settings import Settings


@dataclass
class BuildResult:
    issue: Issue | None
    reason: str | None  # why nothing was built
    replaced: tuple[int, ...] = ()  # numbers of unsent drafts this build took the place of


def hold_build_lock(session: Session) -> None:
    """One build at a time, until this transaction ends (PostgreSQL).

    The schedule's build and an editor's can meet: two at once would both take the
    next number, and the second fail on its uniqueness, or each keep a draft of the
    same articles. A second build waits here for the first to commit, then replaces
    its draft. Whatever builds takes it before any row lock (the schedule's tick, a
    rebuild): taken after one, two transactions could each wait for the other. Taken
    again in the same transaction, it is already held. SQLite takes its one writer's
    lock at BEGIN already.
    """
    if not is_sqlite(session):
        session.execute(select(func.pg_advisory_xact_lock(BUILD_LOCK)))


def next_issue_number(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Issue.number), 0))) or 0) + 1


def build_issue(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    slot_at: datetime | None = None,
    intro: str | None = None,
) -> BuildResult:
    """Build the next issue as a draft from the window ending at `slot_at` (default `now`).

    Returns BuildResult(None, reason) when there is nothing new to send; no row is
    written then. Rendering and CSS inlining happen here, once for all recipients.

    A draft that was never sent (an editor's preview, last week's unsent build) is
    replaced: its articles are still unsent, so the new issue takes them with
    whatever is newer, under the same number. Readers never see a gap in numbers.
    """
    window_end = slot_at or now
    hold_build_lock(session)
    # The drafts to replace, locked before anything is chosen: a draft whose send (or
    # review) starts meanwhile is read again once that commits, and left alone, and the
    # choice below then counts its articles as gone out. Without the lock, the delete
    # would wait for that send's commit and then delete a sending issue with its ledger.
    superseded = list(session.scalars(
        select(Issue).where(Issue.status == IssueStatus.DRAFT, Issue.send_started_at.is_(None))
        .with_for_update()
    ))
    choice = choose_articles(session, window_end, max_articles=settings.digest_max_articles,
                             max_per_section=settings.digest_max_per_section,
                             max_lookback=timedelta(days=settings.digest_max_lookback_days))
    if not choice.articles:
        return BuildResult(None, choice.reason)
    for draft in superseded:
        session.delete(draft)
    session.flush()
    number = next_issue_number(session)
    titles = [a.title for a in choice.articles]
    issue = Issue(
        number=number,
        subject=issue_subject(settings, number, titles[0]),
        preheader=issue_preheader(titles),
        intro=normalize_text(intro).strip() or None if intro else None,
        window_start=choice.window_start,
        window_end=choice.window_end,
        status=IssueStatus.DRAFT,
        html="",
        text="",
        created_at=now,
    )
    session.add(issue)
    session.flush()
    items = [
        IssueArticle(
            article_id=a.id, position=position, title=a.title,
            summary_html=a.summary_html, url=a.url, image_url=a.image_url, section=a.section,
            author=a.author, published_at=a.published_at,
        )
        for position, a in enumerate(choice.articles, start=1)
    ]
    issue.articles = items
    session.flush()
    rendered = render_digest(digest_context(issue, items, settings, issue_date=window_end), settings)
    issue.html = rendered.html
    issue.text = rendered.text
    session.flush()
    return BuildResult(issue, None, tuple(d.number for d in superseded))


def rerender_issue(session: Session, issue: Issue, settings: Settings) -> None:
    """Render a draft again from its snapshot (after a template or intro change)."""
    if issue.status is not IssueStatus.DRAFT:
        raise ValueError(f"issue {issue.number} is {issue.status.value}; only drafts are re-rendered")
    items = list(session.scalars(
        select(IssueArticle).where(IssueArticle.issue_id == issue.id).order_by(IssueArticle.position)
    ))
    rendered = render_digest(digest_context(issue, items, settings, issue_date=issue.window_end),
                             settings)
    issue.html = rendered.html
    issue.text = rendered.text
    session.flush()
