"""The editor's hand on one issue: order, lead story, exclusions, text, rebuild, test send.

Every change is audited, told to the review workflow (`review.note_edit`, which takes
an approved issue back to draft) and rendered again at once, so the stored HTML is
always what readers would get. Domain functions take a Session and never commit;
the two that need the network (adding a page by URL, the test send) take the Runtime
and open their own short transactions around it.

Pin and exclude are the article's own flags (service/articles/curation.py), so a
rebuild keeps a pinned article and leaves an excluded one out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles import curation
from service.articles.clean import canonical_url, cut_at_word
from service.articles.fetch import FetchFailed, FetchRefused
from service.articles.ingest import find_existing, upsert_articles
from service.articles.models import Article
from service.articles.pages import fetch_article_page
from service.db import unit_of_work
from service.delivery import outbox
from service.delivery.transport import Result
from service.digests import review
from service.digests.build import build_issue, hold_build_lock, rerender_issue
from service.digests.models import Issue, IssueArticle, IssueStatus, ScheduleSlot
from service.digests.render import clean_intro, in_email_order, issue_preheader, issue_subject
from service.mail.placeholders import with_sample_links
from service.mail.render import RenderedEmail
from service.persian import normalize_text, single_line
from service.runtime import Runtime
from service.settings import Settings
from service.staff import audit
from service.staff.audit import Actor
from service.subscribers.addresses import normalize_address

TEST_PREFIX = "[آزمایشی]"
# Once a send has begun the issue belongs to its readers; nothing in it changes.
CLOSED = frozenset({IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.CANCELLED, IssueStatus.SENT})
SUBJECT_MAX = 300  # the column's width


class EditRefused(ValueError):
    """An edit that is not made, with the reason in English (str) and Persian."""

    def __init__(self, english: str, persian: str) -> None:
        super().__init__(english)
        self.persian = persian


class NoSuchIssue(EditRefused):
    def __init__(self, number: int) -> None:
        super().__init__(f"there is no issue {number}", "این شماره وجود ندارد.")


def find_issue(session: Session, number: int) -> Issue:
    issue = session.scalars(select(Issue).where(Issue.number == number)).one_or_none()
    if issue is None:
        raise NoSuchIssue(number)
    return issue


def ordered_items(issue: Issue) -> list[IssueArticle]:
    """The issue's articles as readers see them: the lead story first, then by position."""
    return in_email_order(issue, issue.articles)


def is_editable(issue: Issue) -> bool:
    return issue.status not in CLOSED and issue.send_started_at is None


def _editable(issue: Issue) -> None:
    if not is_editable(issue):
        raise EditRefused(f"issue {issue.number} is {issue.status.value}; it can no longer change",
                          "ارسال این شماره آغاز شده است و دیگر تغییر نمی‌کند.")


def _item(issue: Issue, item_id: int) -> IssueArticle:
    for item in issue.articles:
        if item.id == item_id:
            return item
    raise EditRefused(f"issue {issue.number} has no article {item_id}",
                      "این خبر در این شماره نیست.")


def _renumber(items: Sequence[IssueArticle]) -> None:
    for position, item in enumerate(items, start=1):
        item.position = position


def _changed(session: Session, settings: Settings, issue: Issue, actor: Actor, now: datetime,
             action: str, detail: str) -> None:
    """Audit the change through the review workflow (an approved issue returns to draft),
    and render the issue again."""
    session.flush()
    review.note_edit(session, issue, actor, now, detail[:2000], action=action)
    if issue.status is IssueStatus.DRAFT:
        rerender_issue(session, issue, settings)


def move(session: Session, settings: Settings, issue: Issue, item_id: int,
         direction: Literal["up", "down"], actor: Actor, now: datetime) -> None:
    """Swap an article with its neighbour; the lead story stays first."""
    _editable(issue)
    items = ordered_items(issue)
    item = _item(issue, item_id)
    index = items.index(item)
    target = index - 1 if direction == "up" else index + 1
    if item.article_id == issue.lead_article_id or not 0 <= target < len(items) \
            or items[target].article_id == issue.lead_article_id:
        raise EditRefused(f"article {item_id} cannot move {direction}",
                          "این خبر از این جا بالاتر یا پایین‌تر نمی‌رود.")
    items[index], items[target] = items[target], items[index]
    _renumber(items)
    _changed(session, settings, issue, actor, now, "issue.move",
             f"{direction}: {item.title} -> {target + 1}")


def set_lead(session: Session, settings: Settings, issue: Issue, item_id: int | None,
             actor: Actor, now: datetime) -> None:
    """Make an article the lead story (first, with its image), or have none (None)."""
    _editable(issue)
    item = _item(issue, item_id) if item_id is not None else None
    issue.lead_article_id = item.article_id if item is not None else None
    _renumber(ordered_items(issue))
    _changed(session, settings, issue, actor, now, "issue.lead", item.title if item else "none")


def exclude(session: Session, settings: Settings, issue: Issue, item_id: int, actor: Actor,
            now: datetime) -> None:
    """Take an article out of the issue and keep it out of later builds."""
    _editable(issue)
    item = _item(issue, item_id)
    curation.mark(session, item.article_id, excluded=True)
    if issue.lead_article_id == item.article_id:
        issue.lead_article_id = None
    issue.articles.remove(item)
    _renumber(ordered_items(issue))
    _changed(session, settings, issue, actor, now, "issue.exclude", f"{item.title} <{item.url}>")


def pin(session: Session, settings: Settings, issue: Issue, item_id: int, pinned: bool,
        actor: Actor, now: datetime) -> None:
    """Pin an article so a rebuild keeps it (even past its week), or unpin it."""
    _editable(issue)
    item = _item(issue, item_id)
    curation.mark(session, item.article_id, pinned=pinned)
    _changed(session, settings, issue, actor, now, "issue.pin" if pinned else "issue.unpin", item.title)


def pinned_article_ids(session: Session, issue: Issue) -> set[int]:
    ids = [item.article_id for item in issue.articles]
    return set(session.scalars(select(Article.id).where(Article.id.in_(ids), Article.pinned))) \
        if ids else set()


def set_grouping(session: Session, settings: Settings, issue: Issue, grouped: bool, actor: Actor,
                 now: datetime) -> None:
    """Show the articles after the lead under their section headings, or in one list."""
    _editable(issue)
    if bool(issue.group_by_section) == grouped:
        return
    issue.group_by_section = grouped
    _changed(session, settings, issue, actor, now, "issue.grouping", "on" if grouped else "off")


def automatic_subject(settings: Settings, issue: Issue) -> str:
    items = ordered_items(issue)
    return issue_subject(settings, issue.number, items[0].title if items else "")


def automatic_preheader(issue: Issue) -> str:
    return issue_preheader([item.title for item in ordered_items(issue)])


def edit_text(session: Session, settings: Settings, issue: Issue, actor: Actor, now: datetime, *,
              subject: str | None = None, preheader: str | None = None,
              intro: str | None = None) -> list[str]:
    """Set the subject, preheader and introduction; None leaves one alone.

    An empty subject or preheader goes back to the automatic one (from the articles);
    the introduction is kept as plain text (any markup dropped), rendered as
    paragraphs with links. Returns the names of the fields that changed.
    """
    _editable(issue)
    changed: list[str] = []
    if subject is not None:
        text = cut_at_word(single_line(normalize_text(subject)), SUBJECT_MAX)
        new_subject = text or automatic_subject(settings, issue)
        if new_subject != issue.subject or bool(text) != issue.subject_by_editor:
            issue.subject, issue.subject_by_editor = new_subject, bool(text)
            changed.append("subject")
    if preheader is not None:
        text = cut_at_word(single_line(normalize_text(preheader)), SUBJECT_MAX)
        new_preheader = text or automatic_preheader(issue)
        if new_preheader != issue.preheader or bool(text) != issue.preheader_by_editor:
            issue.preheader, issue.preheader_by_editor = new_preheader, bool(text)
            changed.append("preheader")
    if intro is not None:
        new_intro = clean_intro(intro) or None
        if new_intro != issue.intro:
            issue.intro = new_intro
            changed.append("intro")
    if changed:
        _changed(session, settings, issue, actor, now, "issue.text", ", ".join(changed))
    return changed


def add_article(session: Session, settings: Settings, issue: Issue, article: Article, actor: Actor,
                now: datetime) -> IssueArticle:
    """Put a known article at the end of the issue; it is pinned so a rebuild keeps it."""
    _editable(issue)
    if any(item.article_id == article.id for item in issue.articles):
        raise EditRefused(f"article {article.id} is already in issue {issue.number}",
                          "این خبر پیش‌تر در این شماره هست.")
    curation.mark(session, article.id, pinned=True)
    item = IssueArticle(
        article_id=article.id, position=len(issue.articles) + 1, title=article.title,
        summary_html=article.summary_html, url=article.url, image_url=article.image_url,
        section=article.section, author=article.author, published_at=article.published_at,
    )
    issue.articles.append(item)
    _changed(session, settings, issue, actor, now, "issue.add", f"{article.title} <{article.url}>")
    return item


def known_article(session: Session, url: str) -> Article | None:
    try:
        canonical = canonical_url(url.strip())
    except ValueError:
        return None
    return session.scalars(select(Article).where(Article.url == canonical)).one_or_none()


def add_by_url(rt: Runtime, number: int, url: str, actor: Actor, now: datetime) -> str:
    """Add the article at `url`: a known one as it is, else read from its page on the site.

    The page is fetched outside any transaction. Returns the article's title.
    """
    url = url.strip()
    if not url.lower().startswith(("http://", "https://")):
        raise EditRefused("only http and https addresses can be added",
                          "نشانی خبر باید با http یا https آغاز شود.")
    with unit_of_work(rt.sessions) as session:
        _editable(find_issue(session, number))
        known = known_article(session, url)
        if known is not None:
            add_article(session, rt.settings, find_issue(session, number), known, actor, now)
            return known.title
    try:
        page = fetch_article_page(url, rt.settings)
    except FetchRefused as exc:
        raise EditRefused(f"refused: {exc}", "این نشانی خوانده نمی‌شود (نشانی داخلی یا نامجاز).") \
            from exc
    except FetchFailed as exc:
        raise EditRefused(f"could not fetch: {exc}", "صفحهٔ خبر باز نشد؛ نشانی را بررسی کنید.") from exc
    except ValueError as exc:
        raise EditRefused(f"not an article page: {exc}", "در این صفحه عنوان خبری پیدا نشد.") from exc
    with unit_of_work(rt.sessions) as session:
        upsert_articles(session, [page], now)
        article = find_existing(session, page)
        assert article is not None  # just stored
        add_article(session, rt.settings, find_issue(session, number), article, actor, now)
        return article.title


@dataclass(frozen=True)
class Kept:
    """What a rebuild carries over from the draft it replaces."""

    intro: str | None
    subject: str | None
    preheader: str | None
    lead_article_id: int | None
    group_by_section: bool
    slot_ids: list[int]


def rebuild(session: Session, settings: Settings, issue: Issue, actor: Actor, now: datetime) -> Issue:
    """Choose the draft's articles again from what is new by now; the editor's text stays.

    The new draft keeps the number, the introduction, an edited subject or preheader,
    the grouping, the lead story while it is still chosen, and its schedule slot.
    """
    if issue.status is not IssueStatus.DRAFT or issue.send_started_at is not None:
        raise EditRefused(f"issue {issue.number} is {issue.status.value}; only a draft is rebuilt",
                          "فقط پیش‌نویس دوباره ساخته می‌شود.")
    hold_build_lock(session)  # before the slots it moves are locked
    kept = Kept(
        intro=issue.intro,
        subject=issue.subject if issue.subject_by_editor else None,
        preheader=issue.preheader if issue.preheader_by_editor else None,
        lead_article_id=issue.lead_article_id,
        group_by_section=bool(issue.group_by_section),
        slot_ids=list(session.scalars(select(ScheduleSlot.id).where(ScheduleSlot.issue_id == issue.id))),
    )
    result = build_issue(session, settings, now, intro=kept.intro)
    if result.issue is None:
        raise EditRefused(f"nothing to build: {result.reason}",
                          "خبر تازه‌ای برای ساختن این شماره نیست؛ پیش‌نویس دست نخورد.")
    new = result.issue
    for slot in session.scalars(select(ScheduleSlot).where(ScheduleSlot.id.in_(kept.slot_ids))):
        slot.issue_id = new.id
    if kept.subject is not None:
        new.subject, new.subject_by_editor = kept.subject, True
    if kept.preheader is not None:
        new.preheader, new.preheader_by_editor = kept.preheader, True
    new.group_by_section = kept.group_by_section
    if any(item.article_id == kept.lead_article_id for item in new.articles):
        new.lead_article_id = kept.lead_article_id
        _renumber(ordered_items(new))
    _changed(session, settings, new, actor, now, "issue.rebuild",
             f"{len(new.articles)} articles")
    return new


def preview_email(issue: Issue, public_url: str) -> RenderedEmail:
    """The issue as a reader gets it, the personal links replaced by sample ones."""
    return RenderedEmail(subject=issue.subject, text=with_sample_links(issue.text, public_url),
                         html=with_sample_links(issue.html, public_url))


def recipients_of_test(settings: Settings, editor: str | None, extra: Iterable[str] = ()) -> list[str]:
    """The editor, the configured seed list and any extra addresses, each once."""
    seeds = [a for a in settings.test_send_addresses.split(",") if a.strip()]
    out: list[str] = []
    for raw in [*([editor] if editor else []), *seeds, *extra]:
        address = normalize_address(raw)
        if address not in out:
            out.append(address)
    return out


def send_test(rt: Runtime, number: int, recipients: Sequence[str], actor: Actor,
              now: datetime) -> list[tuple[str, Result]]:
    """Send the issue to staff with «[آزمایشی]» before its subject, through the outbox.

    The copies go through the same SMTP path as any single email and have no row in the
    deliveries ledger, so they are never counted in the issue's results. The personal
    links are samples: a test copy cannot unsubscribe anybody.
    """
    if not recipients:
        raise EditRefused("no address to send the test to", "نشانی‌ای برای ارسال آزمایشی نیست.")
    with rt.sessions() as session:
        email = preview_email(find_issue(session, number), rt.settings.public_url)
    test = RenderedEmail(subject=f"{TEST_PREFIX} {email.subject}", text=email.text, html=email.html)
    results = [(to, outbox.send_email(rt, test, to, kind="test", now=now)) for to in recipients]
    with unit_of_work(rt.sessions) as session:
        audit.record(session, actor, "issue.test_send", Issue.audit_target_of(number), now,
                     ", ".join(f"{to}: {result.kind}" for to, result in results)[:2000])
    return results
