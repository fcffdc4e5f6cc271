"""Does every link of an issue answer? Fetched by a worker, the answers kept per issue.

A link is fetched with the feed's SSRF guard and time limit (service.articles.fetch):
only public addresses (plus CHAPAR_FEED_ALLOWED_HOSTS), every redirect vetted, one
deadline per link. The network work happens outside any transaction; the answers are
written afterwards, so the desk shows them when they are ready.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.articles.fetch import AddressPolicy, FetchFailed, FetchRefused, probe
from service.articles.refresh import feed_policy
from service.db import unit_of_work
from service.digests.models import Issue, LinkCheck
from service.runtime import Runtime
from service.settings import Settings

log = logging.getLogger(__name__)
TASK = "chapar.check_links"
PENDING, OK, BROKEN, REFUSED = "pending", "ok", "broken", "refused"
# A few links at a time: each waits on somebody else's server, not on this machine.
PARALLEL = 8


def fetchable(urls: Iterable[str], settings: Settings) -> list[str]:
    """The http(s) links worth fetching, once each: not our own pages (they exist, and a
    sample or per-recipient token would only answer «invalid link»)."""
    own = urlsplit(settings.public_url).netloc.lower()
    seen: dict[str, None] = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https") and parts.netloc and parts.netloc.lower() != own:
            seen.setdefault(url, None)
    return list(seen)


def request_checks(session: Session, issue: Issue, urls: Sequence[str], now: datetime) -> int:
    """Mark these links of the issue as waiting for a fetch; the caller rings TASK after commit."""
    existing = {row.url: row for row in session.scalars(
        select(LinkCheck).where(LinkCheck.issue_id == issue.id))}
    for url in urls:
        row = existing.get(url)
        if row is None:
            session.add(LinkCheck(issue_id=issue.id, url=url, state=PENDING, detail="",
                                  requested_at=now))
        else:
            row.state, row.detail, row.requested_at, row.checked_at = PENDING, "", now, None
    session.flush()
    return len(urls)


def stored(session: Session, issue_id: int) -> dict[str, LinkCheck]:
    return {row.url: row for row in session.scalars(
        select(LinkCheck).where(LinkCheck.issue_id == issue_id))}


def answer(url: str, timeout: float, policy: AddressPolicy) -> tuple[str, str]:
    """(state, detail) for one link."""
    try:
        status = probe(url, timeout=timeout, policy=policy)
    except FetchRefused as exc:
        return REFUSED, str(exc)
    except FetchFailed as exc:
        return BROKEN, str(exc)
    if 200 <= status < 400:
        return OK, f"HTTP {status}"
    return BROKEN, f"HTTP {status}"


def fetch_all(urls: Sequence[str], settings: Settings) -> dict[str, tuple[str, str]]:
    """Every link's answer, a few fetched at once, each within the feed's time limit."""
    policy = feed_policy(settings)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        answers = pool.map(lambda url: answer(url, settings.feed_timeout_seconds, policy), urls)
        return dict(zip(urls, answers, strict=True))


def store(session: Session, issue_id: int, answers: dict[str, tuple[str, str]], now: datetime) -> None:
    rows = stored(session, issue_id)
    for url, (state, detail) in answers.items():
        row = rows.get(url)
        if row is None:
            row = LinkCheck(issue_id=issue_id, url=url, requested_at=now)
            session.add(row)
        row.state, row.detail, row.checked_at = state, detail[:2000], now
    session.flush()


def check_pending_links(rt: Runtime, issue_id: int, now: datetime) -> int:
    """The `chapar.check_links` task: fetch the issue's waiting links and keep the answers."""
    with rt.sessions() as session:
        urls = list(session.scalars(select(LinkCheck.url).where(
            LinkCheck.issue_id == issue_id, LinkCheck.state == PENDING)))
    if not urls:
        return 0
    answers = fetch_all(urls, rt.settings)
    with unit_of_work(rt.sessions) as session:
        if session.get(Issue, issue_id) is not None:
            store(session, issue_id, answers, now)
    log.info("issue %s: %d links checked, %d broken", issue_id, len(answers),
             sum(1 for state, _ in answers.values() if state != OK))
    return len(answers)
