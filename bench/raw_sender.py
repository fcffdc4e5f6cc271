"""The raw limit: the fastest minimal sender we can write, for comparison with Chapar's.

Every process keeps one connection and sends the same pre-built message bytes with
SMTP PIPELINING (RFC 2920) at full depth: the end of one message's data and the
next message's MAIL, RCPT and DATA go out in one write, and the four replies come
back in one read. No ledger, no database, no per-recipient work: what is left is
the cost of the socket and of the server.

    .venv/bin/python -m bench.raw_sender --messages 100000 --processes 2 [--port 2525]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from bench.sink import SmtpSink

SENDER = "bounces+1-raw@chapar.bench"


class SmtpError(Exception):
    pass


def stuffed(message: bytes) -> bytes:
    """The message as DATA content: CRLF line ends, leading dots doubled, ending in CRLF."""
    text = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    if text.startswith(b"."):
        text = b"." + text
    return text.replace(b"\r\n.", b"\r\n..")


class Replies:
    """Reads SMTP replies off a socket; a reply ends at a line whose 4th byte is a space."""

    def __init__(self, sock: socket.socket) -> None:
        self.reader = sock.makefile("rb", buffering=65536)

    def expect(self, first_digit: bytes) -> None:
        while True:
            line = self.reader.readline()
            if not line:
                raise SmtpError("connection closed")
            if line[3:4] != b"-":
                break
        if line[:1] != first_digit:
            raise SmtpError(line.decode("ascii", "replace").strip())


def send_pipelined(host: str, port: int, message: bytes, count: int, first: int) -> None:
    """Send `count` copies over one connection, each to its own recipient."""
    data = stuffed(message) + b".\r\n"
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = Replies(sock)
        replies.expect(b"2")
        sock.sendall(b"EHLO bench.chapar\r\n")
        replies.expect(b"2")

        def envelope(n: int) -> bytes:
            return (f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<reader{n}@example.test>\r\nDATA\r\n"
                    .encode("ascii"))

        sock.sendall(envelope(first))
        for n in range(first, first + count):
            replies.expect(b"2")  # MAIL
            replies.expect(b"2")  # RCPT
            replies.expect(b"3")  # DATA: go ahead
            tail = envelope(n + 1) if n + 1 < first + count else b"QUIT\r\n"
            sock.sendall(data + tail)
            replies.expect(b"2")  # the message is taken
        replies.expect(b"2")  # QUIT


def _worker(host: str, port: int, message: bytes, count: int, first: int, go: Event) -> None:
    go.wait()
    send_pipelined(host, port, message, count, first)


@dataclass(frozen=True)
class RawFigures:
    messages: int
    processes: int
    seconds: float
    sender_cpu: float = 0.0  # CPU seconds of all sender processes together (user + system)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def measure(host: str, port: int, message: bytes, messages: int, processes: int) -> RawFigures:
    """Send `messages` copies from `processes` processes at once; time the whole run."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    shares = [messages // processes + (1 if i < messages % processes else 0)
              for i in range(processes)]
    starts = [sum(shares[:i]) for i in range(processes)]
    workers = [context.Process(target=_worker, args=(host, port, message, n, s, go))
               for n, s in zip(shares, starts, strict=True) if n]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for process in workers:
        process.start()
    time.sleep(0.2)  # let every process reach the starting line
    started = time.perf_counter()
    go.set()
    for process in workers:
        process.join()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined (reaped) senders
    if any(p.exitcode for p in workers):
        raise SmtpError("a raw sender process failed")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return RawFigures(messages, processes, seconds, cpu)


def sample_message(size: int = 45_000) -> bytes:
    """A stand-in of the digest's size when no issue is at hand (base64 lines, as ours)."""
    import base64
    import os

    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (b"From: news@chapar.bench\r\nTo: reader@example.test\r\nSubject: bench\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--port", type=int, help="an smtp-sink already listening on 127.0.0.1")
    parser.add_argument("--message-file", help="message bytes to send (default: 45 KB sample)")
    args = parser.parse_args()
    message = sample_message()
    if args.message_file:
        with open(args.message_file, "rb") as f:
            message = f.read()
    if args.port:
        figures = measure("127.0.0.1", args.port, message, args.messages, args.processes)
        received = None
    else:
        with SmtpSink() as sink:
            figures = measure("127.0.0.1", sink.port, message, args.messages, args.processes)
            received = sink.wait_for(args.messages)
    print(f"raw pipelining sender: {figures.messages} messages of {len(message):,} bytes, "
          f"{figures.processes} processes, {figures.seconds:.2f} s, "
          f"{figures.per_second:,.0f} messages/s"
          + (f", sink counted {received}" if received is not None else ""))


if __name__ == "__main__":
    main()
