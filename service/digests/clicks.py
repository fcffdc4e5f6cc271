"""Tracked article links: `<public_url>/r/<token>`, made per recipient at send time.

Off by default (CHAPAR_TRACK_CLICKS=false): the email links straight to the articles.
When on, each article link in the HTML and text parts becomes a redirect through
Chapar whose signed token names the issue, the article, a digest of the URL it was
signed for, and the send time in coarse steps, so a click in the first seconds after
the send (a link scanner at the receiving server) can be told apart without knowing
who the reader is. Only the per-reader mode adds the subscriber.

The issue stays rendered and CSS-inlined once for everybody (Issue.html keeps the
articles' own URLs, as the archive and previews show them). IssueMessage swaps each
article's links for a per-recipient marker once per issue (`mark_article_links`),
and `ArticleLinks` fills the markers per recipient: in the default mode the tokens
are the same for every message sent in one step, so they are signed once per step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Sequence
from datetime import datetime
from html import unescape
from urllib.parse import unquote

from itsdangerous.encoding import base64_encode

from service.mail.placeholders import CLICK_MARKER_PREFIX, MARKER_END
from service.tokens import ClickLink, Purpose, Tokens

OFF, ON, PER_READER = "false", "true", "per-reader"
# The send time travels in steps this long: fine enough to spot a scanner, too coarse
# to single out one message of a send (and it is never stored with a click).
SEND_STEP_SECONDS = 10
_HREF = re.compile(r'href="([^"]*)"')


def counting(mode: str) -> bool:
    return mode in (ON, PER_READER)


def url_digest(url: str) -> str:
    """Twelve characters naming a URL in a token; the URL itself stays out of the link."""
    return base64.urlsafe_b64encode(hashlib.sha256(url.encode("utf-8")).digest()[:9]).decode()


def send_step(now: datetime) -> int:
    return int(now.timestamp()) // SEND_STEP_SECONDS


def click_marker(article_id: int) -> str:
    return f"{CLICK_MARKER_PREFIX}{article_id}{MARKER_END}"


def _same_url(url: str) -> str:
    """A URL as written in the template and as lxml serialised it compare equal."""
    return unquote(url.strip())


def mark_article_links(html: str, text: str,
                       articles: Sequence[tuple[int, str]]) -> tuple[str, str]:
    """The bodies with every link to an article replaced by that article's click marker.

    In the HTML an `href` names the article when it is its URL (the inliner may have
    percent-encoded it); in the text part an article's URL stands on a line of its own.
    """
    by_url = {_same_url(url): article_id for article_id, url in articles}

    def href(match: re.Match[str]) -> str:
        article_id = by_url.get(_same_url(unescape(match.group(1))))
        return match.group(0) if article_id is None else f'href="{click_marker(article_id)}"'

    lines = []
    for line in text.split("\n"):
        article_id = by_url.get(_same_url(line)) if line.strip() else None
        lines.append(line if article_id is None else click_marker(article_id))
    return _HREF.sub(href, html), "\n".join(lines)


class ClickSigner:
    """`Tokens.click` for many links at a fraction of the cost: the key is derived once.

    The payload is encoded exactly as itsdangerous encodes it (compact JSON, zlib when
    that saves two bytes, base64url), so `Tokens.read_click` reads these tokens; the
    tests check they are identical.
    """

    def __init__(self, tokens: Tokens) -> None:
        signer = tokens._plain(Purpose.CLICK).make_signer()
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._sep = signer.sep

    def __call__(self, link: ClickLink) -> str:
        data = json.dumps(link.payload(), separators=(",", ":")).encode()
        compressed = zlib.compress(data)
        payload = (b"." + base64_encode(compressed) if len(compressed) < len(data) - 1
                   else base64_encode(data))
        mac = self._mac.copy()
        mac.update(payload)
        return (payload + self._sep + base64_encode(mac.digest())).decode("ascii")


class ArticleLinks:
    """The per-recipient values of an issue's click markers."""

    def __init__(self, tokens: Tokens, public_url: str, issue_number: int,
                 articles: Sequence[tuple[int, str]], mode: str) -> None:
        self.base = public_url.rstrip("/") + "/r/"
        self.issue_number = issue_number
        self.articles = [(article_id, url_digest(url)) for article_id, url in articles]
        self.urls = {click_marker(article_id): url for article_id, url in articles}
        self.per_reader = mode == PER_READER
        self.sign = ClickSigner(tokens)
        self._step: int | None = None
        self._shared: dict[str, str] = {}

    def _values(self, step: int, subscriber_id: int | None) -> dict[str, str]:
        return {click_marker(article_id): self.base + self.sign(
                    ClickLink(self.issue_number, article_id, digest, step, subscriber_id))
                for article_id, digest in self.articles}

    def values(self, subscriber_id: int, now: datetime) -> dict[str, str]:
        step = send_step(now)
        if self.per_reader:
            return self._values(step, subscriber_id)
        if step != self._step:  # everybody sent in this step gets the same links
            self._step, self._shared = step, self._values(step, None)
        return self._shared

    def shared_key(self, now: datetime) -> int | None:
        """What the article links of a message sent `now` share with other messages: the
        send step in the default mode; None per reader (each reader's links are their own)."""
        return None if self.per_reader else send_step(now)

    def targets(self, values: dict[str, str]) -> dict[str, str]:
        """{tracked link: the article's own URL} for one recipient's values."""
        return {values[marker]: url for marker, url in self.urls.items() if marker in values}
