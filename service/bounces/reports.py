"""Read a bounce or complaint report: what kind it is, for whom, and which VERP address.

Delivery status notifications (RFC 3464) are read per recipient block so the
Status code decides hard or soft: an MTA that gives up on a full mailbox says
`Action: failed` with `Status: 4.2.2`, which is a soft bounce, not a dead address.
Reports in the older, MTA-specific formats go through flufl.bounce's detectors.
Feedback-loop complaints (ARF, RFC 5965) are complaints, never bounces.
"""

from __future__ import annotations

import email
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from service.bounces.verp import PREFIX


class Kind(enum.StrEnum):
    HARD = "hard"  # the address does not exist or refuses for good
    SOFT = "soft"  # full mailbox, delayed, greylisted: try again next issue
    COMPLAINT = "complaint"  # the reader pressed "this is spam"


@dataclass(frozen=True)
class Failure:
    recipient: str | None
    kind: Kind
    status: str | None = None  # the DSN's enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None


@dataclass(frozen=True)
class Report:
    """What one report says; `failures` is empty when the message is no report at all."""

    failures: tuple[Failure, ...]
    verp_addresses: tuple[str, ...] = field(default=())
    subject: str = ""

    @property
    def is_report(self) -> bool:
        return bool(self.failures)


# Headers in which an MTA records the envelope recipient of the report it delivers,
# and, inside a returned original, the return path that was used.
ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
                    "to", "return-path", "x-failed-recipients", "sender", "errors-to")
_VERP = re.compile(re.escape(PREFIX) + r"[a-z0-9]+-[a-z0-9]+@[^\s>,;\"']+", re.IGNORECASE)
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


def parse_report(raw: bytes) -> Report:
    """Read one raw message (bytes as received) into a Report; never raises on garbage."""
    message = email.message_from_bytes(raw)
    subject = _decoded(message.get("subject", ""))[:300]
    verp = tuple(dict.fromkeys(_verp_addresses(message)))
    complaint = _complaint(message)
    if complaint is not None:
        return Report((complaint,), verp, subject)
    failures = _dsn_failures(message)
    if not failures:
        failures = _heuristic_failures(message)
    return Report(tuple(failures), verp, subject)


def _text(value: object) -> str:
    return " ".join(str(value).split())


def _decoded(value: object) -> str:
    """A header as text, RFC 2047 words decoded; undecodable input kept as it is."""
    try:
        return _text(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        return _text(value)


def _parts(message: Message) -> Iterator[Message]:
    yield from message.walk()


def _header_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # some MTAs send the part unparsed
        return [email.message_from_string(block) for block in re.split(r"\r?\n\r?\n", payload)
                if block.strip()]
    return []


def _verp_addresses(message: Message) -> Iterator[str]:
    """Every VERP-shaped address in the headers of the report and of any message it quotes."""
    for part in _parts(message):
        blocks = [part]
        ctype = part.get_content_type()
        if ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                blocks = [email.message_from_bytes(text)]
        for block in blocks:
            for name in ENVELOPE_HEADERS:
                for value in block.get_all(name, []):
                    yield from (m.group(0).lower() for m in _VERP.finditer(str(value)))


def _complaint(message: Message) -> Failure | None:
    for part in _parts(message):
        if part.get_content_type() != "message/feedback-report":
            continue
        fields: dict[str, str] = {}
        for block in _header_blocks(part):
            for name, value in block.items():
                fields.setdefault(name.lower(), _text(value))
        recipient = parseaddr(fields.get("original-rcpt-to", ""))[1] or None
        kind = fields.get("feedback-type", "abuse")
        return Failure(recipient, Kind.COMPLAINT, None, f"feedback-type: {kind}"[:500])
    return None


def _dsn_failures(message: Message) -> list[Failure]:
    failures: list[Failure] = []
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _header_blocks(part):
            action = block.get("action", "").strip().lower()
            if not action.startswith(("fail", "error", "delayed")):
                continue  # delivered, relayed, expanded: not a failure
            status_match = _STATUS.search(block.get("status", ""))
            status = status_match.group(0) if status_match else None
            temporary = action.startswith("delayed") or (status or "").startswith("4")
            kind = Kind.SOFT if temporary else Kind.HARD
            recipient = _recipient(block)
            diagnostic = _text(block.get("diagnostic-code", "")).partition(";")[2].strip()
            failures.append(Failure(recipient, kind, status, diagnostic[:500] or None))
    return failures


def _recipient(block: Message) -> str | None:
    for name in ("original-recipient", "final-recipient", "x-actual-recipient"):
        value = block.get(name, "")
        address = str(value).partition(";")[2].strip().strip("<>") if ";" in str(value) else ""
        if "@" in address:
            return address.lower()
    return None


def _heuristic_failures(message: Message) -> list[Failure]:
    """Non-DSN bounce formats (qmail, old Exim, Exchange...) through flufl.bounce."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a malformed message: treat it as no report
        return []
    failures = [Failure(_decode(a), Kind.HARD) for a in sorted(permanent)]
    failures += [Failure(_decode(a), Kind.SOFT) for a in sorted(temporary - permanent)]
    if not failures and message.get_all("x-failed-recipients"):
        # Exim names the recipients in a header even when its body is reworded.
        for _, address in getaddresses(message.get_all("x-failed-recipients", [])):
            failures.append(Failure(address.lower() or None, Kind.HARD))
    return failures


def _decode(address: bytes) -> str | None:
    text = address.decode("ascii", "replace").strip().lower()
    return text if "@" in text else None
