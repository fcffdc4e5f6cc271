"""The bounce mailbox poller: fetch reports over IMAP or POP3, take each in, delete it.

Each message is taken in and committed on its own, and only then deleted (POP3
DELE, IMAP \\Deleted + EXPUNGE), so a crash between the two at worst reads a
report twice; taking a report in twice changes nothing (see intake).
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

MAX_PER_POLL = 500
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Mailbox:
    """Where bounce reports wait, parsed from one URL.

    imaps://user:pass@host:993/INBOX, imap://..., pop3s://user:pass@host:995, pop3://...
    """

    protocol: str  # imap | pop3
    tls: bool
    host: str
    port: int
    username: str
    password: str
    folder: str = "INBOX"

    @classmethod
    def from_url(cls, url: str) -> Mailbox:
        parts = urlsplit(url)
        defaults = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
        if parts.scheme not in defaults:
            raise ValueError(f"bounce mailbox URL scheme must be one of {sorted(defaults)}")
        if not parts.hostname or not parts.username:
            raise ValueError("bounce mailbox URL needs a user and a host")
        return cls(
            protocol=parts.scheme.rstrip("s"),
            tls=parts.scheme.endswith("s"),
            host=parts.hostname,
            port=parts.port or defaults[parts.scheme],
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
        )


@dataclass
class PollResult:
    fetched: int = 0
    taken: int = 0
    failed: int = 0  # left in the mailbox for the next poll


TakeOne = Callable[[bytes], None]
"""Takes one raw report in and commits; raising leaves the message in the mailbox."""


def poll(mailbox: Mailbox, take_one: TakeOne, limit: int = MAX_PER_POLL,
         tls_context: ssl.SSLContext | None = None) -> PollResult:
    """Read up to `limit` messages, hand each to `take_one`, delete those it took."""
    reader = _poll_imap if mailbox.protocol == "imap" else _poll_pop3
    return reader(mailbox, take_one, limit, tls_context or ssl.create_default_context())


def _take(take_one: TakeOne, raw: bytes, result: PollResult) -> bool:
    result.fetched += 1
    try:
        take_one(raw)
    except Exception:
        log.exception("could not take in a bounce report; it stays in the mailbox")
        result.failed += 1
        return False
    result.taken += 1
    return True


@contextmanager
def _pop3(mailbox: Mailbox, context: ssl.SSLContext) -> Iterator[poplib.POP3]:
    client: poplib.POP3
    if mailbox.tls:
        client = poplib.POP3_SSL(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS,
                                 context=context)
    else:
        client = poplib.POP3(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS)
    try:
        client.user(mailbox.username)
        client.pass_(mailbox.password)
        yield client
        client.quit()  # QUIT is what makes POP3 deletions happen
    except BaseException:
        client.close()
        raise


def _poll_pop3(mailbox: Mailbox, take_one: TakeOne, limit: int,
               context: ssl.SSLContext) -> PollResult:
    result = PollResult()
    with _pop3(mailbox, context) as client:
        count, _size = client.stat()
        for number in range(1, min(count, limit) + 1):
            _, lines, _ = client.retr(number)
            if _take(take_one, b"\r\n".join(lines) + b"\r\n", result):
                client.dele(number)
    return result


@contextmanager
def _imap(mailbox: Mailbox, context: ssl.SSLContext) -> Iterator[imaplib.IMAP4]:
    client: imaplib.IMAP4
    if mailbox.tls:
        client = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=context,
                                   timeout=TIMEOUT_SECONDS)
    else:
        client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS)
    try:
        client.login(mailbox.username, mailbox.password)
        yield client
        client.logout()
    except BaseException:
        client.shutdown()
        raise


def _poll_imap(mailbox: Mailbox, take_one: TakeOne, limit: int,
               context: ssl.SSLContext) -> PollResult:
    result = PollResult()
    with _imap(mailbox, context) as client:
        status, _ = client.select(_quoted(mailbox.folder))
        if status != "OK":
            raise OSError(f"cannot open bounce folder {mailbox.folder!r}")
        _, data = client.uid("SEARCH", "UNDELETED")
        uids = [u.decode("ascii") for u in (data[0] or b"").split()[:limit]]
        for uid in uids:
            _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if raw is None:
                continue
            if _take(take_one, raw, result):
                client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        if result.taken:
            client.expunge()
        client.close()
    return result


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
