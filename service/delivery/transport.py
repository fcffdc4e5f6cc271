"""A persistent SMTP client that pipelines pre-built messages (RFC 2920).

Why not smtplib: it waits for every reply before the next command (four round
trips a message), runs a dot-stuffing regex over each 45 KB body and builds
strings per call; measured on this machine type it tops out near 1,000 messages
a second where a pipelining sender reaches 2,200-2,900. Here, when the server
offers PIPELINING, the end of one message's DATA and the next message's MAIL,
RCPT and DATA go out in one write and their replies are read in order: one round
trip per message. Without PIPELINING it falls back to one command at a time.

Each message's outcome follows RELIABILITY.md: a 4xx or a connection lost before
the final "." is handed to the kernel is deferred; a 5xx fails; a connection lost
after the "." was written, before the reply, is uncertain (it may be delivered).
"""

from __future__ import annotations

import base64
import contextlib
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from service.settings import Settings, SmtpTarget

# Enhanced status codes (RFC 3463) that mean the address itself is bad.
_BAD_MAILBOX = re.compile(r"\b5\.1\.(1|2|3|6|10)\b")
_NO_SUCH_USER = re.compile(
    r"no such (user|mailbox|recipient)|user unknown|unknown user|does not exist|"
    r"mailbox (not found|unavailable)|recipient (address )?rejected", re.IGNORECASE)


QUIT_TIMEOUT = 5.0  # a server that does not answer QUIT is not waited for longer


class SmtpError(Exception):
    """The connection could not be opened or set up (greeting, EHLO, TLS, AUTH).

    Its text is one line that names the step that failed, fit for `chapar status`.
    """

    def __init__(self, code: int | None, text: str, step: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.step = step  # connect | tls | greeting | ehlo | starttls | auth


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    # The complete message, CRLF line ends, not yet dot-stuffed: one bytes, or its
    # pieces in order (written with one gathering write, never joined unless a line
    # must be dot-stuffed).
    data: bytes | tuple[bytes, ...]
    # The builder vouches that no line of `data` starts with "." and that it ends with
    # a line end (a digest: header lines, MIME boundaries and base64 lines only), so
    # it goes out unsearched. Otherwise every line start is looked at.
    dot_free: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """One message's fate: kind is sent | deferred | failed | uncertain | queued (not tried)."""

    kind: str
    code: int | None
    text: str
    mailbox_gone: bool = False  # a 5xx that says the address does not exist
    stage: str = ""  # the reply's command: mail | rcpt | data | dot; empty when no reply

    @property
    def recipient_refused(self) -> bool:
        """A permanent refusal of this recipient itself (5xx to RCPT)."""
        return self.kind == "failed" and self.stage == "rcpt"

    @property
    def slows_domain(self) -> bool:
        return self.code == 421


def classify(code: int, text: str, stage: str = "") -> Result:
    """A reply other than success, as the ledger sees it."""
    if 400 <= code < 500:
        return Result("deferred", code, text, stage=stage)
    gone = code in (550, 551, 553) and bool(_BAD_MAILBOX.search(text) or _NO_SUCH_USER.search(text))
    return Result("failed", code, text, mailbox_gone=gone, stage=stage)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The one TLS policy for every SMTP connection Chapar opens.

    The system's trusted CAs, plus CHAPAR_SMTP_CA_FILE (a private CA or a relay's
    self-signed certificate); certificates and host names are checked unless
    CHAPAR_SMTP_TLS_VERIFY=false, which Settings refuses in production.
    """
    context = ssl.create_default_context()
    if settings.smtp_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.smtp_ca_file))
    if not settings.smtp_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connection_for(settings: Settings, *, timeout: float = 60.0) -> SmtpConnection:
    """An unopened connection to the configured relay, with its HELO name and TLS policy."""
    # A plain connection never uses a TLS context: none is made (20 ms each).
    tls = tls_context(settings) if settings.smtp.tls != "none" else None
    return SmtpConnection(settings.smtp, timeout=timeout, helo=settings.helo_name, tls=tls,
                          server_name=settings.smtp_tls_server_name or None)


def _setup_failure(step: str, where: str, exc: BaseException) -> SmtpError:
    """One line that says which step of opening the connection failed, and why."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpError(None, f"TLS certificate verify failed ({where}): {exc.verify_message}",
                         "tls")
    if isinstance(exc, ssl.SSLError):
        return SmtpError(None, f"TLS handshake failed ({where}): {exc.reason or exc}", "tls")
    if isinstance(exc, ConnectionRefusedError):
        return SmtpError(None, f"connection refused by {where}", "connect")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return SmtpError(None, f"{_STEP_NAMES.get(step, step)} with {where} failed: {detail}", step)


_STEP_NAMES = {"connect": "connecting", "tls": "TLS", "greeting": "greeting", "ehlo": "EHLO",
               "starttls": "STARTTLS", "auth": "AUTH"}


class _Lost(Exception):
    """The connection went away while reading a reply."""


class SmtpConnection:
    """One logged-in SMTP session, reused for as many messages as it lives."""

    def __init__(self, target: SmtpTarget, *, timeout: float = 60.0, helo: str = "localhost",
                 tls: ssl.SSLContext | None = None, server_name: str | None = None) -> None:
        self.target = target
        self._tls = tls
        # The name the certificate must carry (and the SNI): the URL's host unless the
        # URL names the relay by address and its certificate by name.
        self.server_name = server_name or target.host
        self.timeout = timeout
        self.helo = helo
        self.sock: socket.socket | None = None
        self._buffer = b""
        self.extensions: set[str] = set()
        self.last_used = 0.0

    @property
    def tls(self) -> ssl.SSLContext:
        """The TLS policy; made when first needed (loading the CAs takes 20 ms)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()  # certificates verified by default
        return self._tls

    # -- setup ---------------------------------------------------------------------------
    def open(self) -> None:
        """Connect, greet, secure and log in; raises SmtpError for every way that fails."""
        where = f"{self.target.host}:{self.target.port}"
        step = "connect"
        try:
            sock = socket.create_connection((self.target.host, self.target.port), timeout=self.timeout)
            # Small pipelined writes must not wait for the previous write's ACK (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.target.tls == "implicit":
                step = "tls"
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except OSError as exc:
            raise _setup_failure(step, where, exc) from exc
        self.sock, self._buffer = sock, b""
        try:
            step = "greeting"
            self._expect(220, self._reply(), step)
            step = "ehlo"
            self._ehlo()
            if self.target.tls == "starttls":
                step = "starttls"
                if "STARTTLS" not in self.extensions:
                    raise SmtpError(None, f"{where} does not offer STARTTLS", step)
                self._command(b"STARTTLS\r\n", 220, step)
                step = "tls"
                self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)
                self._buffer = b""
                step = "ehlo"
                self._ehlo()
            if self.target.username:
                step = "auth"
                secret = f"\0{self.target.username}\0{self.target.password or ''}".encode()
                self._command(b"AUTH PLAIN " + base64.b64encode(secret) + b"\r\n", 235, step)
        except (OSError, _Lost) as exc:
            self.close()
            raise _setup_failure(step, where, exc) from exc
        except SmtpError:
            self.close()
            raise
        self.last_used = time.monotonic()

    def _ehlo(self) -> None:
        _code, text = self._command(f"EHLO {self.helo}\r\n".encode(), 250, "ehlo")
        self.extensions = {line.split()[0].upper() for line in text.splitlines()[1:] if line.split()}

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    def is_open(self) -> bool:
        return self.sock is not None

    def has_reply(self) -> bool:
        """A reply line is already read into the buffer, or decrypted and waiting (TLS)."""
        if b"\n" in self._buffer:
            return True
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def alive(self) -> bool:
        """A NOOP round trip, for connections that sat idle (servers time them out)."""
        if self.sock is None:
            return False
        try:
            self.sock.sendall(b"NOOP\r\n")
            code, _ = self._reply()
        except (OSError, _Lost):
            self.close()
            return False
        return code == 250

    def close(self) -> None:
        """Say QUIT and wait briefly for the 221 (RFC 5321 4.1.1.10), then close the socket."""
        if self.sock is not None:
            with contextlib.suppress(OSError, _Lost):
                self.sock.settimeout(min(self.timeout, QUIT_TIMEOUT))
                self.sock.sendall(b"QUIT\r\n")
                self._reply()
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None
        self._buffer = b""

    # -- replies -------------------------------------------------------------------------
    def _reply(self) -> tuple[int, str]:
        while True:
            buffer = self._buffer
            end = buffer.find(b"\r\n")
            if end > 3 and buffer[3] == 0x20 and buffer[:3].isdigit():  # one line, the usual
                self._buffer = buffer[end + 2:]
                return int(buffer[:3]), buffer[4:end].decode("utf-8", "replace")
            if end >= 0:
                return self._long_reply()
            self._receive()

    def _receive(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as exc:
            raise _Lost("timed out waiting for a reply") from exc
        except OSError as exc:  # a reset is a lost connection like a clean close
            raise _Lost(f"connection lost: {exc}") from exc
        if not chunk:
            raise _Lost("connection closed by the server")
        self._buffer += chunk

    def _long_reply(self) -> tuple[int, str]:
        """A reply of several lines ("250-..." up to "250 ..."), or an odd one."""
        lines: list[str] = []
        while True:
            end = self._buffer.find(b"\r\n")
            while end < 0:
                self._receive()
                end = self._buffer.find(b"\r\n")
            line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            text = line.decode("utf-8", "replace")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                try:
                    return int(text[:3]), "\n".join(lines)
                except ValueError as exc:
                    raise _Lost(f"unreadable reply {text!r}") from exc

    def _command(self, line: bytes, expected: int, step: str) -> tuple[int, str]:
        assert self.sock is not None
        self.sock.sendall(line)
        reply = self._reply()
        self._expect(expected, reply, step)
        return reply

    @staticmethod
    def _expect(expected: int, reply: tuple[int, str], step: str) -> None:
        if reply[0] != expected:
            text = " ".join(reply[1].split())
            raise SmtpError(reply[0], f"{_STEP_NAMES.get(step, step)} refused: {reply[0]} {text}",
                            step)

    # -- sending -------------------------------------------------------------------------
    def send_many(self, envelopes: Sequence[Envelope]) -> list[Result]:
        """Send each message; one Result per envelope, in order.

        Never raises for a message's own failure. When the connection is lost, the
        message whose "." was written and unanswered is uncertain, the others not yet
        finished are deferred, and the connection is closed (the caller reconnects).
        """
        return send_interleaved([(self, envelopes)])[0]

    def steps(self, envelopes: Sequence[Envelope], results: list[Result | None]) -> Iterator[None]:
        """`send_many` one write at a time: yields after each write the server must answer.

        Between a write and the read of its replies the server is busy with what was
        written; `send_interleaved` spends that time on other connections. Without
        PIPELINING every command waits for its reply and nothing is yielded.
        """
        pending: int | None = None  # index whose content goes out with the next write
        reset = False  # a transaction refused before DATA must be reset before the next MAIL
        written = -1  # the last message whose commands went out
        try:
            for i, envelope in enumerate(envelopes):
                commands = ((b"RSET\r\n" if reset else b"")
                            + b"MAIL FROM:<" + envelope.sender.encode() + b">"
                            + (b" SMTPUTF8" if _needs_utf8(envelope) else b"") + b"\r\nRCPT TO:<"
                            + envelope.recipient.encode() + b">\r\nDATA\r\n")
                if self.pipelining:
                    written = i  # goes out with the previous message's content
                    if pending is not None:
                        self._finish_write(envelopes, results, pending, then=commands)
                        yield
                        self._finish_read(results, pending)
                    else:
                        self._write(commands)
                        yield
                    if reset:
                        self._reply()
                    pending = self._open_data(results, i)
                    reset = pending is None
                else:
                    if pending is not None:
                        self._finish_write(envelopes, results, pending)
                        self._finish_read(results, pending)
                    written = i
                    pending = self._lockstep_open(envelope, results, i)
                if pending is None and results[i] is not None and results[i].code == 421:  # type: ignore[union-attr]
                    raise _Lost("server is closing the connection (421)")
            if pending is not None:
                self._finish_write(envelopes, results, pending)
                yield
                self._finish_read(results, pending)
                pending = None
        except (OSError, _Lost) as exc:
            self.close()
            reason = f"connection lost: {exc}"
            for j, result in enumerate(results):
                if result is None and j <= written:
                    results[j] = Result("deferred", None, reason)
                elif result is None:  # never started: back in the queue, no attempt counted
                    results[j] = Result("queued", None, "not attempted")
        self.last_used = time.monotonic()

    def _write(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def _open_data(self, results: list[Result | None], i: int) -> int | None:
        """Read MAIL, RCPT and DATA replies of message i; its index if DATA may follow."""
        mail = self._reply()
        rcpt = self._reply()
        data = self._reply()
        for stage, (code, text) in (("mail", mail), ("rcpt", rcpt)):
            if code >= 400:
                results[i] = classify(code, text, stage)
                if data[0] == 354:  # a server that accepted DATA anyway: send an empty body
                    self._write(b".\r\n")
                    self._reply()
                return None
        if data[0] != 354:
            results[i] = classify(*data, "data")
            return None
        return i

    def _lockstep_open(self, envelope: Envelope, results: list[Result | None], i: int) -> int | None:
        assert self.sock is not None
        for stage, line in (("mail", b"MAIL FROM:<" + envelope.sender.encode() + b">"
                             + (b" SMTPUTF8" if _needs_utf8(envelope) else b"") + b"\r\n"),
                            ("rcpt", b"RCPT TO:<" + envelope.recipient.encode() + b">\r\n")):
            self.sock.sendall(line)
            code, text = self._reply()
            if code >= 400:
                results[i] = classify(code, text, stage)
                if code != 421:
                    self.sock.sendall(b"RSET\r\n")
                    self._reply()
                return None
        self.sock.sendall(b"DATA\r\n")
        code, text = self._reply()
        if code != 354:
            results[i] = classify(code, text, "data")
            return None
        return i

    def _finish_write(self, envelopes: Sequence[Envelope], results: list[Result | None], i: int,
                      then: bytes = b"") -> None:
        """Write message i's content and ".", then `then` (its reply is read by `_finish_read`)."""
        assert self.sock is not None
        pieces = _as_data(envelopes[i])
        # One write for the content, its "." and the next message's commands: two
        # writes would cost the server a second wake-up per message. sendmsg gathers
        # the pieces without copying them into one, and counting the bytes that left
        # tells, after a failure, whether the "." reached the kernel.
        dot_end = sum(map(len, pieces))
        if then:
            pieces.append(then)
        total = dot_end + len(then)
        sent = 0
        try:
            if isinstance(self.sock, ssl.SSLSocket):  # TLS sockets cannot gather
                content = memoryview(b"".join(pieces))
                while sent < total:
                    sent += self.sock.send(content[sent:])
            while sent < total:
                sent += self.sock.sendmsg(_remaining(pieces, sent) if sent else pieces)
        except OSError as exc:
            if sent < dot_end:  # the server cannot have accepted message i
                results[i] = Result("deferred", None, f"connection lost during DATA: {exc}")
                raise _Lost(str(exc)) from exc
            # Otherwise only `then` was cut short; the final reply tells about message i.

    def _finish_read(self, results: list[Result | None], i: int) -> None:
        """Read the final reply to message i's "."."""
        try:
            code, text = self._reply()
        except _Lost as exc:
            results[i] = Result("uncertain", None, f"no reply after the final '.': {exc}")
            raise
        results[i] = (Result("sent", code, text, stage="dot") if code == 250
                      else classify(code, text, "dot"))


def send_interleaved(parts: Sequence[tuple[SmtpConnection, Sequence[Envelope]]],
                     between: Callable[[], bool] | None = None) -> list[list[Result]]:
    """Send each part over its own connection at once, from this one thread.

    Each connection is driven one write at a time (`SmtpConnection.steps`): after a
    write the server has work to do, and the connection is taken up again as soon as
    its replies arrive (poll), whichever connection that is, so one connection's
    round trip hides behind the others' writes, without threads; taking them in a
    fixed turn would leave a connection whose reply is in waiting behind one whose
    reply is not. `between`, if given, is called while no reply is in: work that does
    not touch the connections (building the next messages); it returns False when
    it has nothing left to do, and from then on each wait is one blocking poll.
    Results per part, in order; as `send_many`, nothing raises for a message's own
    failure.
    """
    results: list[list[Result | None]] = [[None] * len(envelopes) for _, envelopes in parts]
    waiting: dict[int, tuple[SmtpConnection, Iterator[None]]] = {}  # by the socket's fd
    poller = select.poll()  # registered once: a poll call costs half of a select's
    for (connection, envelopes), found in zip(parts, results, strict=True):
        step = connection.steps(envelopes, found)
        if next(step, _DONE) is not _DONE:
            assert connection.sock is not None  # a step yields only after a write
            fd = connection.sock.fileno()
            waiting[fd] = (connection, step)
            poller.register(fd, select.POLLIN)
    idle_work = between is not None
    timeout = round(max((c.timeout for c, _ in waiting.values()), default=0.0) * 1000)
    while waiting:
        if idle_work:
            ready = _answered(waiting, poller, 0)
            if not ready:
                assert between is not None
                idle_work = between()
                continue
        else:
            # Wait for a reply; past the connections' own timeout, let each of them
            # read (and time out) as it would alone.
            ready = _answered(waiting, poller, timeout) or list(waiting)
        for fd in ready:
            if next(waiting[fd][1], _DONE) is _DONE:  # its part is done (or its connection)
                del waiting[fd]
                poller.unregister(fd)
    return [[r if r is not None else Result("deferred", None, "not attempted") for r in found]
            for found in results]


def _answered(waiting: dict[int, tuple[SmtpConnection, Iterator[None]]], poller: select.poll,
              timeout_ms: int) -> list[int]:
    """The connections (by fd) with a reply to read: already buffered, or readable in time."""
    buffered = [fd for fd, (c, _) in waiting.items() if c.sock is None or c.has_reply()]
    if buffered:  # a reply to read, or a closed connection: its step finds out at once
        return buffered
    return [fd for fd, _ in poller.poll(timeout_ms)]


_DONE = object()


def _as_data(envelope: Envelope) -> list[bytes]:
    """The message as DATA content, ending with its "." line: every line that starts
    with "." gets a second one (RFC 5321 4.5.2), and the content ends with a line end.
    A message its builder vouches for (`dot_free`) is taken as it is."""
    data = envelope.data
    if envelope.dot_free:
        return [data, b".\r\n"] if isinstance(data, bytes) else [*data, b".\r\n"]
    pieces = [data] if isinstance(data, bytes) else [piece for piece in data if piece]
    if _needs_stuffing(pieces):
        joined = b"".join(pieces)
        pieces = [(b"." + joined if joined.startswith(b".") else joined).replace(b"\r\n.", b"\r\n..")]
    if not pieces or not pieces[-1].endswith(b"\r\n"):
        pieces.append(b"\r\n")
    pieces.append(b".\r\n")
    return pieces


def _needs_stuffing(pieces: Sequence[bytes]) -> bool:
    """Whether a line of the pieces, taken together, starts with "."."""
    line_start = True  # the message's start, or the last piece ended a line
    for piece in pieces:
        if (line_start and piece.startswith(b".")) or b"\n." in piece:
            return True
        line_start = piece.endswith(b"\n")
    return False


def _remaining(pieces: list[bytes], offset: int) -> list[memoryview]:
    """The pieces still to send after `offset` bytes went out."""
    left = []
    for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        left.append(memoryview(piece)[offset:])
        offset = 0
    return left


def _needs_utf8(envelope: Envelope) -> bool:
    return not (envelope.sender.isascii() and envelope.recipient.isascii())
