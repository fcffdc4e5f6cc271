"""Checks before a send, on what a reader would really get.

`run_checks` renders the issue for one reader, with the longest personal links any
reader can have (so the size is the largest per-recipient size), exactly as the
workers would send it, then parses those bytes back and checks them: Gmail's
clipping limit, the right-to-left house rules, images, links, leftover template
syntax, the subject, and that there is something to send. Whether each link answers
is fetched by a worker (service.digests.links) and read back here.

Blockers stop a send (`require_passing` raises ChecksBlocked) unless an admin
overrode exactly these blockers on exactly this issue's bytes; warnings are shown.
The desk, `chapar digest check`, review and the send start all call this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery.dkim import DkimKeyError, DkimSigner
from service.delivery.message import IssueMessage, Recipient
from service.digests import links
from service.digests.models import ChecksOverride, Issue, LinkCheck
from service.digests.rendered_checks import (
    ArticleRef,
    CheckItem,
    Clip,
    Link,
    Severity,
    clip,
    direction_items,
    html_part,
    image_items,
    item,
    latin_items,
    link_items,
    links_in,
    mime_items,
    parse_html,
    parse_message,
    persian_text_items,
    placeholder_items,
    preheader_items,
    size_items,
    style_items,
    subject_items,
    where,
)
from service.instance_keys import MESSAGE_ID, instance_key
from service.persian import persian_digits
from service.runtime import Runtime
from service.staff import audit
from service.staff.audit import Actor

__all__ = ["CheckItem", "CheckReport", "ChecksBlocked", "Severity", "blockers", "override",
           "require_passing", "run_checks"]

# Subscriber ids are 32-bit: the largest gives the longest signed links any reader gets.
LONGEST_ID = 2**31 - 1


@dataclass(frozen=True)
class CheckReport:
    issue_number: int
    checked_at: datetime
    items: tuple[CheckItem, ...]
    clip: Clip
    links_total: int = 0
    links_pending: int = 0
    fingerprint: str = ""  # the issue's bytes and its blockers; an override names it
    overridden_by: str | None = None  # who let these blockers go, if anybody
    subject: str = field(default="", compare=False)

    @property
    def blocked(self) -> bool:
        return bool(blockers(self)) and self.overridden_by is None

    def as_json(self) -> str:
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat()
        data["blocked"] = self.blocked
        return json.dumps(data, ensure_ascii=False, indent=2)


def blockers(report: CheckReport) -> list[CheckItem]:
    return [i for i in report.items if i.severity is Severity.BLOCKER]


def warnings(report: CheckReport) -> list[CheckItem]:
    return [i for i in report.items if i.severity is Severity.WARNING]


class ChecksBlocked(Exception):
    """The checks found blockers nobody overrode; str() is one line, Persian | English."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        found = blockers(report)
        persian = "؛ ".join(i.fa for i in found)
        english = "; ".join(i.en for i in found)
        super().__init__(f"ارسال متوقف شد: {persian} | send blocked by the checks: {english}")


def reader_bytes(rt: Runtime, session: Session, issue: Issue,
                 now: datetime) -> tuple[bytes, dict[str, str]]:
    """The complete message the relay would get for the reader with the longest links,
    and {tracked link: the article's own URL} when article links are tracked."""
    s = rt.settings
    try:
        dkim = DkimSigner.from_settings(s)
    except DkimKeyError:
        dkim = None  # the sending check (preflight) refuses an unusable key; sizes stay the same
    message = IssueMessage(
        issue_number=issue.number, subject=issue.subject, html=issue.html, text=issue.text,
        from_name=s.from_name, from_address=s.from_address, list_name=s.list_name,
        list_id=s.list_id, public_url=s.public_url, verp_domain=s.verp_domain, tokens=rt.tokens,
        secret=instance_key(session, MESSAGE_ID).hex(), dkim=dkim, click_mode=s.track_clicks,
        articles=[(a.article_id, a.url) for a in issue.articles],
    )
    raw = message.render(Recipient(LONGEST_ID, LONGEST_ID, f"reader@{s.from_domain}",
                                   s.from_domain), now)
    tracked = message.article_links
    return raw, ({} if tracked is None else tracked.targets(message.values(LONGEST_ID, now)))


def untracked(body: str, targets: dict[str, str]) -> str:
    """A body as sent with each tracked link put back to its article's own URL."""
    for link, url in targets.items():
        body = body.replace(link, url)
    return body


def run_checks(rt: Runtime, session: Session, issue: Issue, now: datetime, *,
               fetch_links: bool = True) -> CheckReport:
    """Check the issue as one reader gets it. Never commits.

    With `fetch_links` the links are fetched now and the answers stored; without it,
    the answers a worker stored are used, and links not fetched yet are noted.
    """
    articles = [ArticleRef(a.title, a.url) for a in issue.articles]
    raw, targets = reader_bytes(rt, session, issue, now)
    message = parse_message(raw)
    html = html_part(message)
    body = message.get_body(("plain",))
    # The size is the size as sent; the links are checked as the articles' own URLs, where
    # a tracked link leads (a redirect through this server, which is not worth fetching).
    text = untracked(str(body.get_content()), targets) if body is not None else ""
    tree = parse_html(untracked(html, targets))
    found = links_in(tree, articles)
    as_sent = {url: link for link, url in targets.items()}
    cut = clip(html, [ArticleRef(a.title, as_sent.get(a.url, a.url)) for a in articles])
    parts = {"subject": issue.subject, "preheader": issue.preheader, "html": html, "text": text}
    items: list[CheckItem] = []
    if not articles:
        items.append(item("articles.none", Severity.BLOCKER, "این شماره هیچ خبری ندارد",
                          "the issue has no articles"))
    items += subject_items(issue.subject)
    items += size_items(cut)
    items += placeholder_items(parts)
    items += link_items(found)
    items += image_items(tree, articles)
    items += direction_items(tree, html)
    items += latin_items(tree, articles)
    items += style_items(html)
    items += preheader_items(tree)
    items += persian_text_items(tree, html, {k: parts[k] for k in ("subject", "preheader", "text")},
                                articles)
    items += mime_items(message, raw, html, issue.html)
    urls = links.fetchable((link.url for link in found), rt.settings)
    if fetch_links and urls:
        links.store(session, issue.id, links.fetch_all(urls, rt.settings), now)
    link_results, pending = link_answer_items(found, urls, links.stored(session, issue.id))
    items += link_results
    fingerprint = fingerprint_of(issue, items)
    overridden = session.scalar(select(ChecksOverride.actor).where(
        ChecksOverride.issue_id == issue.id, ChecksOverride.fingerprint == fingerprint))
    return CheckReport(issue.number, now, tuple(items), cut, len(urls), pending, fingerprint,
                       overridden if any(i.severity is Severity.BLOCKER for i in items) else None,
                       issue.subject)


def link_answer_items(found: list[Link], urls: list[str],
                      answers: dict[str, LinkCheck]) -> tuple[list[CheckItem], int]:
    """A warning per broken link, naming its article; a note for links not answered yet."""
    items: list[CheckItem] = []
    pending = 0
    reported: set[str] = set()
    for link in found:
        if link.url not in urls or link.url in reported:
            continue
        reported.add(link.url)
        row = answers.get(link.url)
        if row is None or row.state == links.PENDING:
            pending += 1
        elif row.state == links.BROKEN:
            items.append(item("links.broken", Severity.WARNING, "پیوند پاسخ نمی‌دهد",
                              "a link does not answer", f"{where(link.article, link.url)} ({row.detail})"))
        elif row.state == links.REFUSED:
            items.append(item("links.refused", Severity.WARNING,
                              "پیوند به نشانی‌ای درون شبکه اشاره می‌کند و بررسی نشد",
                              "a link points at a private address and was not fetched",
                              where(link.article, link.url)))
    if pending:
        items.append(item("links.pending", Severity.NOTE,
                          f"{persian_digits(pending)} پیوند هنوز بررسی نشده است",
                          f"{pending} links not checked yet"))
    return items, pending


def fingerprint_of(issue: Issue, items: list[CheckItem]) -> str:
    found = sorted(f"{i.code}|{i.detail}" for i in items if i.severity is Severity.BLOCKER)
    digest = hashlib.sha256()
    for piece in (issue.subject, issue.preheader, issue.html, issue.text, *found):
        digest.update(piece.encode("utf-8") + b"\0")
    return digest.hexdigest()


def override(session: Session, issue: Issue, report: CheckReport, actor: Actor, now: datetime,
             reason: str = "") -> ChecksOverride:
    """An admin lets these blockers go for exactly this version of the issue; audited.

    The caller checks the permission (staff.manage, i.e. an admin)."""
    found = blockers(report)
    if not found:
        raise ValueError(f"issue {issue.number} has no blockers to override")
    row = ChecksOverride(issue_id=issue.id, fingerprint=report.fingerprint, actor=actor.label,
                         reason=reason.strip()[:2000], at=now)
    session.add(row)
    audit.record(session, actor, "issue.checks_override", Issue.audit_target_of(issue.number), now,
                 "; ".join(f"{i.code}: {i.detail}"[:200] for i in found)
                 + (f" — {reason.strip()}" if reason.strip() else ""))
    session.flush()
    return row


def require_passing(rt: Runtime, session: Session, issue: Issue, now: datetime, *,
                    fetch_links: bool = False) -> CheckReport:
    """Run the checks; raise ChecksBlocked on blockers no admin overrode. For review and sends."""
    report = run_checks(rt, session, issue, now, fetch_links=fetch_links)
    if report.blocked:
        raise ChecksBlocked(report)
    return report


def start_link_checks(rt: Runtime, issue_id: int, now: datetime) -> int:
    """Mark the issue's links for a worker to fetch, commit, then ring the worker.

    Returns how many links wait for an answer (none: nothing is rung)."""
    with unit_of_work(rt.sessions) as session:
        issue = session.get_one(Issue, issue_id)
        found = links_in(parse_html(issue.html), [ArticleRef(a.title, a.url) for a in issue.articles])
        count = links.request_checks(session, issue,
                                     links.fetchable((f.url for f in found), rt.settings), now)
    if count:
        rt.ring(links.TASK, issue_id)
    return count
