"""An in-process SMTP server (aiosmtpd) that records every message and misbehaves on cue.

Faults are programmed per recipient or for the next connections, so a test can make
the server answer 421 at greeting, 4xx/5xx at RCPT, 554 after DATA, or drop the
connection in the middle of DATA (after 354 and the first kilobyte of the body,
before the final "." is read) or right after the final ".".
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.network import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    helo: str = ""  # the name the client gave in EHLO/HELO
    peer: object = None  # the client's (host, port): which connection brought it

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Faults:
    """What to do wrong. Keys of the dicts are recipient addresses."""

    greeting_421: int = 0  # refuse this many next connections with 421
    rcpt: dict[str, str] = field(default_factory=dict)  # address -> "451 ..." etc.
    after_data: dict[str, str] = field(default_factory=dict)  # address -> "554 ..."
    drop_mid_data: set[str] = field(default_factory=set)  # abort while the body is arriving
    drop_after_dot: set[str] = field(default_factory=set)  # keep the message, never answer
    once: bool = False  # each per-recipient fault fires once, then the address is served


class _Handler:
    def __init__(self, recorder: SmtpRecorder) -> None:
        self.recorder = recorder

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.recorder._take(self.recorder.faults.rcpt, address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rec = self.recorder
        data = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        for r in recipients:
            reply = rec._take(rec.faults.after_data, r)
            if reply:
                return reply
        rec._store(Received(envelope.mail_from, recipients, data, session.host_name or "",
                            session.peer))
        if any(rec._take_flag(rec.faults.drop_after_dot, r) for r in recipients):
            _drop(server)
            return "421 dropped"
        return "250 OK queued"


def _drop(server: SMTP) -> None:
    transport = server.transport
    if transport is not None:
        transport.abort()


# How much of the body the server reads before a mid-DATA drop: less than any message.
MID_DATA_BYTES = 1024


class _FaultySMTP(SMTP):
    async def smtp_QUIT(self, arg: str) -> None:
        recorder: SmtpRecorder = self.event_handler.recorder
        with recorder._lock:
            recorder.quits += 1
            recorder.quits_by_helo[self.session.host_name or ""] += 1
        await super().smtp_QUIT(arg)

    async def _handle_client(self) -> None:  # type: ignore[override]
        recorder: SmtpRecorder = self.event_handler.recorder
        if recorder._take_greeting_fault():
            await self.push("421 4.3.2 Service not available, closing channel")
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg: str) -> None:
        """A drop_mid_data recipient: answer 354, read the body's start, abort before the ".".

        aiosmtpd's handle_DATA only runs once the whole body and its "." have arrived,
        so the drop has to happen here, in the command itself.
        """
        recorder: SmtpRecorder = self.event_handler.recorder
        envelope = self.envelope
        if (arg or envelope is None or not envelope.rcpt_tos
                or not any(recorder._take_flag(recorder.faults.drop_mid_data, r)
                           for r in list(envelope.rcpt_tos))):
            await super().smtp_DATA(arg)
            return
        # A small, fixed receive buffer from here on: what the client can still hand to
        # its kernel is bounded, so a body larger than its send buffer is cut off there.
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        start = await self._reader.readexactly(MID_DATA_BYTES)
        assert b"\r\n.\r\n" not in start, "message shorter than a mid-DATA drop needs"
        recorder.mid_data_drops += 1
        _drop(self)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)


class SmtpRecorder:
    """`tls` makes it a TLS server: STARTTLS (required) or, with `implicit`, TLS from the start."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 tls: ssl.SSLContext | None = None, implicit: bool = False) -> None:
        self.faults = Faults()
        self.messages: list[Received] = []
        self.mid_data_drops = 0  # connections aborted with a body half read
        self.quits = 0  # QUIT commands received
        # By the name the client gave in EHLO: a test that names its own client counts only its
        # goodbyes, not those of connections an earlier test left to close on their idle timer.
        self.quits_by_helo: Counter[str] = Counter()
        self._lock = threading.Lock()
        options: dict[str, Any] = {}
        if tls is not None and implicit:
            options["ssl_context"] = tls
        elif tls is not None:
            options.update(tls_context=tls, require_starttls=True)
        self.scheme = "smtps" if tls and implicit else "smtp+starttls" if tls else "smtp"
        self._controller = _Controller(_Handler(self), hostname=host, port=port or free_port(),
                                       decode_data=False, enable_SMTPUTF8=True,
                                       data_size_limit=50 * 1024 * 1024, ready_timeout=10,
                                       **options)
        self.host = host
        self.port = self._controller.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> SmtpRecorder:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.faults = Faults()
            self.mid_data_drops = 0
            self.quits = 0
            self.quits_by_helo.clear()

    def _store(self, received: Received) -> None:
        with self._lock:
            self.messages.append(received)

    def _take(self, table: dict[str, str], address: str) -> str | None:
        with self._lock:
            reply = table.get(address)
            if reply and self.faults.once:
                del table[address]
            return reply

    def _take_flag(self, table: set[str], address: str) -> bool:
        with self._lock:
            hit = address in table
            if hit and self.faults.once:
                table.discard(address)
            return hit

    def _take_greeting_fault(self) -> bool:
        with self._lock:
            if self.faults.greeting_421 > 0:
                self.faults.greeting_421 -= 1
                return True
            return False

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(r for m in self.messages for r in m.rcpt_tos)

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Received]:
        """Wait until predicate(messages) is true; return the messages."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.messages)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        raise AssertionError(f"SMTP server did not see the expected mail in {timeout}s; "
                             f"got {len(self.messages)} messages")
