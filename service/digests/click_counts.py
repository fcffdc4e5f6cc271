"""Following a tracked article link: check it, count the click, say where it goes.

`/r/<token>` answers with a redirect only to the URL the token was signed for, and
only when that URL is still the article's URL in that issue (a validly signed token
for any other URL is refused, so the route is never an open redirect). The work per
click is one small select and one small insert.

Link scanners at the receiving servers follow links too, so every click is kept and
those that are likely not a person's are marked with the reason:

- head: a HEAD request (it gets the redirect's headers, and is not a visit);
- scanner: the user agent is a known scanner, bot or library (CrawlerDetect's list),
  or there is none;
- too_soon: within TOO_SOON_SECONDS of the send (the token carries the send time in
  coarse steps, so this needs nobody's identity);
- burst: one client followed BURST_LINKS different links of one issue within
  BURST_SECONDS. The client is a keyed hash of its address and user agent, with a key
  that changes every day, kept in Redis for two seconds; neither is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crawlerdetect import CrawlerDetect
from redis.exceptions import RedisError
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from service.digests.clicks import PER_READER, SEND_STEP_SECONDS, counting, url_digest
from service.digests.models import Click, Issue, IssueArticle
from service.subscribers.models import Subscriber
from service.tokens import ClickLink

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

HEAD, SCANNER, TOO_SOON, BURST = "head", "scanner", "too_soon", "burst"
REASONS = (HEAD, SCANNER, TOO_SOON, BURST)
# Counted from the start of the send step, so at least 20 seconds after the message left:
# scanners follow every link on arrival, people read first.
TOO_SOON_SECONDS = SEND_STEP_SECONDS + 20
BURST_SECONDS = 1.0
BURST_LINKS = 3  # different links; fewer when the issue has fewer articles (at least 2)
KEEP_MS = 2000  # how long a client's recent clicks are remembered


@dataclass(frozen=True)
class Visit:
    """What the request tells about whoever followed the link; nothing of it is stored."""

    method: str
    user_agent: str
    client: str  # the client's address


class RecentClicks:
    """Each client's clicks of the last two seconds, per issue: Redis, or this process.

    Redis is shared by every web process; without it (the embedded setup, one web
    process) a dictionary does. If Redis cannot be reached, bursts are not detected
    and the clicks still count: a reader's redirect never waits on it.
    """

    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self._local: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def note(self, issue_number: int, client_key: str, article_id: int, click_id: int,
             at_ms: int) -> list[str]:
        """Remember this click; return every click of this client and issue still remembered."""
        key = f"chapar:click-burst:{issue_number}:{client_key}"
        entry = f"{at_ms}:{article_id}:{click_id}"
        if self.redis is None:
            with self._lock:
                horizon = at_ms - KEEP_MS
                self._local = {k: kept for k, v in self._local.items()
                               if (kept := [e for e in v if int(e.split(":")[0]) > horizon])}
                self._local.setdefault(key, []).append(entry)
                return list(self._local[key])
        try:
            pipe = self.redis.pipeline()
            pipe.rpush(key, entry)
            pipe.pexpire(key, KEEP_MS)
            pipe.lrange(key, 0, -1)
            found = pipe.execute()[2]
        except RedisError:
            log.warning("click burst store unreachable; counting a click without the burst check")
            return [entry]
        return [e.decode() if isinstance(e, bytes) else str(e) for e in found]


def burst_of(entries: list[str], at_ms: int, links: int) -> list[int]:
    """The click ids of a burst among a client's recent clicks, or [] if there is none."""
    recent = [e.split(":") for e in entries]
    within = [(int(article), int(click)) for at, article, click in recent
              if at_ms - int(at) <= BURST_SECONDS * 1000]
    if len({article for article, _ in within}) < links:
        return []
    return [click for _, click in within]


class ClickCounter:
    """Everything a web process needs to follow tracked links; built once per app."""

    def __init__(self, secret: str, redis: Redis | None) -> None:
        self._secret = secret.encode()
        self.recent = RecentClicks(redis)
        self._crawlers = CrawlerDetect()
        self._crawler_lock = threading.Lock()  # CrawlerDetect keeps its last match on itself
        self.scanner("warm-up")  # compiles its large pattern now, not on a reader's click

    def client_key(self, visit: Visit, now: datetime) -> str:
        """A keyed hash of the client's address and user agent; the key changes daily."""
        day_key = hmac.new(self._secret, f"chapar.click-client:{now.date()}".encode(),
                           hashlib.sha256).digest()
        return hmac.new(day_key, f"{visit.client}\0{visit.user_agent}".encode(),
                        hashlib.sha256).hexdigest()[:32]

    def scanner(self, user_agent: str) -> bool:
        if not user_agent.strip():
            return True  # browsers always say who they are
        with self._crawler_lock:
            return bool(self._crawlers.isCrawler(user_agent))

    def reason(self, link: ClickLink, visit: Visit, now: datetime) -> str | None:
        """Why this click is not likely a person's, before the burst check; None if it is."""
        if visit.method == "HEAD":
            return HEAD
        if self.scanner(visit.user_agent):
            return SCANNER
        if now.timestamp() - link.sent_step * SEND_STEP_SECONDS < TOO_SOON_SECONDS:
            return TOO_SOON
        return None

    def follow(self, session: Session, link: ClickLink, visit: Visit, mode: str, now: datetime,
               *, count: bool = True) -> str | None:
        """Where the link leads, with the click recorded; None when it leads nowhere.

        `count` False (the client is over its rate limit) redirects without recording.
        Never commits; the caller's transaction holds the insert.
        """
        rows = session.execute(
            select(Issue.id, IssueArticle.article_id, IssueArticle.url)
            .join(IssueArticle, IssueArticle.issue_id == Issue.id)
            .where(Issue.number == link.issue_number)).all()
        target = next((row for row in rows if row.article_id == link.article_id), None)
        if target is None or not hmac.compare_digest(url_digest(target.url), link.url_digest):
            return None
        if not (count and counting(mode)):
            return str(target.url)
        subscriber = None
        if mode == PER_READER and link.subscriber_id is not None:
            # An erased subscriber's old link still counts, for nobody.
            subscriber = select(Subscriber.id).where(
                Subscriber.id == link.subscriber_id).scalar_subquery()
        reason = self.reason(link, visit, now)
        click_id = session.scalar(insert(Click).values(
            issue_id=target.id, article_id=link.article_id, subscriber_id=subscriber, at=now,
            filtered=reason).returning(Click.id))
        assert click_id is not None
        at_ms = int(now.timestamp() * 1000)
        entries = self.recent.note(link.issue_number, self.client_key(visit, now),
                                   link.article_id, click_id, at_ms)
        burst = burst_of(entries, at_ms, max(2, min(BURST_LINKS, len(rows))))
        if burst and len(rows) > 1:
            session.execute(update(Click).where(Click.id.in_(burst), Click.filtered.is_(None))
                            .values(filtered=BURST))
        return str(target.url)


def reader_clicks(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """The clicks recorded with this subscriber (the per-reader mode), for their data export."""
    rows = session.execute(
        select(Click.at, Issue.number, IssueArticle.url)
        .join(Issue, Issue.id == Click.issue_id)
        .join(IssueArticle, (IssueArticle.issue_id == Click.issue_id)
              & (IssueArticle.article_id == Click.article_id))
        .where(Click.subscriber_id == subscriber_id).order_by(Click.at, Click.id))
    return [{"at": at.isoformat(), "issue": number, "url": url} for at, number, url in rows]
