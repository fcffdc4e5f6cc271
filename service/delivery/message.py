"""An issue's message built once; per-recipient bytes joined in at send time.

Building an `EmailMessage` per recipient costs 5-6 ms; this costs tens of
microseconds: the headers that never change are encoded once, each body is split at
its per-recipient markers once (Personalizer), and the part of each body before
its first personal marker is base64-encoded once (once per send step when article
links are tracked), cut at a whole base64 line, so only the tail that holds the
reader's own links is encoded per recipient.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime

from service.bounces.verp import VerpSigner
from service.delivery.dkim import DkimSigner
from service.digests.clicks import ArticleLinks, counting, mark_article_links
from service.mail.compose import sender
from service.mail.headers import encode_address, encode_unstructured
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL, Personalizer
from service.persian import single_line
from service.tokens import KeyedHmac, Purpose, Tokens

LINE_BYTES = 57  # raw bytes per 76-character base64 line
PERSONAL = frozenset({UNSUBSCRIBE_URL, PREFERENCES_URL})  # the markers that are one reader's


ZLIB_NEVER_WINS = 10  # digits: a payload this short is never compressed by itsdangerous


class LastingSigner:
    """`Tokens.lasting(purpose, id)` for many ids, at a fifth of the cost.

    itsdangerous derives its HMAC key and JSON-encodes and zlib-tries the payload on
    every call (~80 us; three tokens a message add up at a thousand messages a
    second). For an integer id the payload is just its base64url digits, so the
    key is derived once and each token is one HMAC (KeyedHmac). The tests check the tokens are
    identical to what `Tokens` makes and reads.
    """

    def __init__(self, tokens: Tokens, purpose: Purpose) -> None:
        signer = tokens._plain(purpose).make_signer()
        self._mac = KeyedHmac(signer.derive_key(), signer.digest_method().name)
        self._sep = signer.sep

    def __call__(self, subscriber_or_delivery_id: int) -> str:
        digits = str(int(subscriber_or_delivery_id)).encode()
        # itsdangerous compresses when zlib wins by two bytes (ids with long runs of one
        # digit); do the same so the token is byte for byte the one Tokens makes.
        # zlib's output is never shorter than 9 bytes (header, one deflate block, adler),
        # so ids of up to 10 digits never compress by two: no need to try.
        compressed = zlib.compress(digits) if len(digits) > ZLIB_NEVER_WINS else b""
        if compressed and len(compressed) < len(digits) - 1:
            payload = b"." + _urlsafe(compressed)
        else:
            payload = _urlsafe(digits)
        return (payload + self._sep + _urlsafe(self._mac.digest(payload))).decode("ascii")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _urlsafe(data: bytes) -> bytes:
    """itsdangerous' `base64_encode` (URL-safe, unpadded) in two C calls, not five."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def message_id(issue_number: int, subscriber_id: int, secret: str, domain: str) -> str:
    """Deterministic per (issue, subscriber): a resent copy carries the same id, so
    clients and archives can fold duplicates; the hash keeps ids unguessable.

    `secret` is the installation's message-id key (instance_keys.MESSAGE_ID), not the
    rotating secret, so a copy resent after a rotation still folds with the first."""
    digest = hashlib.sha256(f"{secret}:{issue_number}:{subscriber_id}".encode()).hexdigest()[:16]
    return f"<chapar.{issue_number}.{subscriber_id}.{digest}@{domain}>"




_B64_LINE = re.compile(b".{1,76}", re.DOTALL)


def _b64_lines(data: bytes) -> bytes:
    """base64 in CRLF-terminated 76-character lines (data: whole 57-byte lines or the end).

    The lines are cut by a regular expression, in C: half the time of slicing them in
    a Python loop, for the kilobyte or so of each message's own tail."""
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    return b"\r\n".join(_B64_LINE.findall(encoded)) + b"\r\n"


class _Body:
    """One text part: personalised with one join, encoded mostly ahead of time.

    The part before the first marker that is the reader's own (the unsubscribe and
    preferences links) is the same for everybody who shares its other values (tracked
    article links sent in one step, service.digests.clicks): it is encoded once per
    `shared` key, cut at a whole base64 line. A key of None (per-reader article links)
    encodes it every time.
    """

    def __init__(self, template: str) -> None:
        pieces = Personalizer(template).pieces
        self.head = pieces[0].encode("utf-8")
        self.markers: list[str] = pieces[1::2]
        self.texts: list[bytes] = [text.encode("utf-8") for text in pieces[2::2]]
        self.split = next((i for i, marker in enumerate(self.markers) if marker in PERSONAL),
                          len(self.markers))
        self._cache: tuple[object, bytes, bytes] | None = None  # (key, encoded, rest)

    def _parts(self, values: dict[str, str], start: int, stop: int) -> list[bytes]:
        parts = []
        for marker, text in zip(self.markers[start:stop], self.texts[start:stop], strict=True):
            parts.append(values.get(marker, marker).encode("utf-8"))  # see Personalizer.fill
            parts.append(text)
        return parts

    def _shared(self, values: dict[str, str]) -> tuple[bytes, bytes]:
        data = b"".join([self.head, *self._parts(values, 0, self.split)])
        cut = len(data) - len(data) % LINE_BYTES
        return _b64_lines(data[:cut]), data[cut:]

    def encode(self, values: dict[str, str], shared: object | None = 0) -> tuple[bytes, bytes]:
        """The part base64-encoded, as its shared start and its own end (joined by the caller)."""
        cache = self._cache  # read once: another thread may replace it
        if shared is not None and cache is not None and cache[0] == shared:
            encoded, rest = cache[1], cache[2]
        else:
            encoded, rest = self._shared(values)
            if shared is not None:
                self._cache = (shared, encoded, rest)
        tail = self._parts(values, self.split, len(self.markers))
        return encoded, _b64_lines(b"".join([rest, *tail]))


@dataclass(frozen=True, slots=True)
class Recipient:
    """One claimed ledger row: everything the sender needs, nothing more."""

    delivery_id: int
    subscriber_id: int
    email: str
    domain: str


class IssueMessage:
    """Everything about one issue's message that is the same for all recipients."""

    def __init__(self, *, issue_number: int, subject: str, html: str, text: str,
                 from_name: str, from_address: str, list_name: str, list_id: str,
                 public_url: str, verp_domain: str, tokens: Tokens, secret: str,
                 dkim: DkimSigner | None = None, click_mode: str = "false",
                 articles: Sequence[tuple[int, str]] = ()) -> None:
        self.issue_number = issue_number
        self.tokens = tokens
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self.verp_domain = verp_domain
        self.from_domain = from_address.rpartition("@")[2]
        self.dkim = dkim
        self.unsubscribe_token = LastingSigner(tokens, Purpose.UNSUBSCRIBE)
        # The issue rides along in the link (the token stays per subscriber, so older
        # links keep working): an unsubscribe through it counts in this issue's results.
        self.unsubscribe_issue = f"?i={issue_number}"
        self.preferences_token = LastingSigner(tokens, Purpose.PREFERENCES)
        self.verp = VerpSigner(tokens)
        from_header = sender(from_name, from_address)
        self.fixed_headers: list[tuple[bytes, bytes]] = [
            (b"From", _value(encode_address("From", from_header).encode("ascii"))),
            (b"Subject", _value(encode_unstructured("Subject", single_line(subject)).encode())),
            (b"MIME-Version", b"1.0"),
            (b"List-Id", _list_id(list_name, list_id)),
            (b"List-Unsubscribe-Post", b"List-Unsubscribe=One-Click"),
            (b"Feedback-ID", f"{issue_number}:digest:{list_id}".encode("ascii")),
        ]
        self.boundary = f"=_chapar_{issue_number}_{hashlib.sha256(html.encode()).hexdigest()[:20]}"
        self.fixed_headers.append(
            (b"Content-Type", f'multipart/alternative;\r\n boundary="{self.boundary}"'.encode())
        )
        # Tracked article links are markers filled per recipient (service.digests.clicks);
        # `articles` is (article id, URL) of each article of the issue.
        self.article_links: ArticleLinks | None = None
        if counting(click_mode) and articles:
            html, text = mark_article_links(html, text, articles)
            self.article_links = ArticleLinks(tokens, public_url, issue_number, articles, click_mode)
        self.text = _Body(text)
        self.html = _Body(html)
        b = self.boundary.encode()
        self.text_open = (b"--" + b + b"\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
                          b"Content-Transfer-Encoding: base64\r\n\r\n")
        self.html_open = (b"--" + b + b"\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                          b"Content-Transfer-Encoding: base64\r\n\r\n")
        self.close = b"--" + b + b"--\r\n"

    def links(self, subscriber_id: int) -> dict[str, str]:
        unsubscribe = self.unsubscribe_token(subscriber_id)
        preferences = self.preferences_token(subscriber_id)
        return {
            UNSUBSCRIBE_URL: f"{self.public_url}/unsubscribe/{unsubscribe}{self.unsubscribe_issue}",
            PREFERENCES_URL: f"{self.public_url}/preferences/{preferences}",
        }

    def values(self, subscriber_id: int, now: datetime) -> dict[str, str]:
        """Every per-recipient value: the personal links and, when tracked, the article links."""
        values = self.links(subscriber_id)
        if self.article_links is not None:
            values.update(self.article_links.values(subscriber_id, now))
        return values

    def envelope_sender(self, delivery_id: int) -> str:
        return self.verp.address(delivery_id, self.verp_domain)

    def _date(self, now: datetime) -> bytes:
        """The Date header's value, formatted once a second."""
        second = now.replace(microsecond=0)  # the header shows whole seconds
        cached = self._dated  # read once: another thread may replace it
        if cached is None or cached[0] != second:
            cached = self._dated = (second, format_datetime(second).encode("ascii"))
        return cached[1]

    _dated: tuple[datetime, bytes] | None = None

    def render(self, recipient: Recipient, now: datetime) -> bytes:
        """The complete message bytes for one recipient, CRLF line ends."""
        return b"".join(self.render_parts(recipient, now))

    def render_parts(self, recipient: Recipient, now: datetime) -> tuple[bytes, ...]:
        """`render` in pieces, not joined: the header block, then the body's pieces.

        The sender writes them as they are (one gathering write): the body's big
        pieces, encoded once per issue, are not copied into a message of their own
        for every recipient. No line starts with "." (each is a header line, which
        starts with a name or, folded, with white space; a MIME boundary; or base64)
        and the last ends with CRLF, so they need no dot-stuffing (Envelope.dot_free).
        """
        values = self.values(recipient.subscriber_id, now)
        shared = 0 if self.article_links is None else self.article_links.shared_key(now)
        body = [self.text_open, *self.text.encode(values, shared), self.html_open,
                *self.html.encode(values, shared), self.close]
        headers = [
            (b"Date", self._date(now)),
            (b"Message-ID", message_id(self.issue_number, recipient.subscriber_id, self.secret,
                                       self.from_domain).encode("ascii")),
            (b"To", recipient.email.encode("utf-8")),
            *self.fixed_headers,
            (b"List-Unsubscribe", f"<{values[UNSUBSCRIBE_URL]}>".encode("ascii")),
        ]
        head = [piece for name, value in headers for piece in (name, b": ", value, b"\r\n")]
        head.append(b"\r\n")
        if self.dkim is not None:
            signed = b"".join(body)
            body = [signed]
            head.insert(0, self.dkim.signature_header(headers, signed, int(now.timestamp())))
        return (b"".join(head), *body)


def _list_id(list_name: str, list_id: str) -> bytes:
    """`phrase <id>`: the phrase encoded and folded with CRLF, the id left readable."""
    header = Header(single_line(list_name), "utf-8", header_name="List-Id")
    header.append(f"<{list_id}>", "us-ascii")
    return header.encode(linesep="\r\n").encode("ascii")


def _value(line: bytes) -> bytes:
    """The value part of a folded `Name: value` header."""
    return line.split(b":", 1)[1].lstrip(b" ")
