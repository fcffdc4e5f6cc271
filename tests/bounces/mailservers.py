"""Minimal POP3 (RFC 1939) and IMAP4rev1 (RFC 3501) servers on 127.0.0.1 for poller tests.

Just the commands a mail client uses to drain a mailbox: enough for Python's own
poplib and imaplib to talk to them over a real socket, and they keep what was
deleted, so a test can see exactly which messages the poller removed.
"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any

USER, PASSWORD = "bounces", "s3cret pass"


@dataclass
class Maildrop:
    messages: list[bytes] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)  # indexes into messages, deletion committed
    logins: list[str] = field(default_factory=list)

    def remaining(self) -> list[bytes]:
        return [m for i, m in enumerate(self.messages) if i not in self.deleted]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    maildrop: Maildrop


class _Pop3Handler(socketserver.StreamRequestHandler):
    server: _Server

    def send(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")

    def handle(self) -> None:
        drop = self.server.maildrop
        visible = [i for i in range(len(drop.messages)) if i not in drop.deleted]
        marked: set[int] = set()
        authed = False
        self.send(b"+OK POP3 ready")
        while line := self.rfile.readline():
            verb, _, arg = line.strip().decode().partition(" ")
            verb = verb.upper()
            if verb == "USER":
                self.send(b"+OK")
            elif verb == "PASS":
                authed = arg == PASSWORD
                drop.logins.append(arg)
                self.send(b"+OK" if authed else b"-ERR auth")
            elif not authed and verb != "QUIT":
                self.send(b"-ERR log in first")
            elif verb == "STAT":
                size = sum(len(drop.messages[i]) for i in visible)
                self.send(f"+OK {len(visible)} {size}".encode())
            elif verb == "RETR":
                body = drop.messages[visible[int(arg) - 1]]
                self.send(b"+OK")
                for raw in body.split(b"\r\n")[:-1] if body.endswith(b"\r\n") else body.split(b"\r\n"):
                    self.send(b"." + raw if raw.startswith(b".") else raw)
                self.send(b".")
            elif verb == "DELE":
                marked.add(visible[int(arg) - 1])
                self.send(b"+OK")
            elif verb == "QUIT":
                drop.deleted |= marked  # only QUIT commits deletions (RFC 1939 UPDATE state)
                self.send(b"+OK bye")
                return
            else:
                self.send(b"-ERR unknown")


class _ImapHandler(socketserver.StreamRequestHandler):
    server: _Server

    def send(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")

    def handle(self) -> None:
        drop = self.server.maildrop
        flagged: set[int] = set()
        self.send(b"* OK [CAPABILITY IMAP4rev1] ready")
        while line := self.rfile.readline():
            tag, _, rest = line.strip().decode().partition(" ")
            command, _, arg = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, arg = arg.partition(" ")
                command = "UID " + command.upper()
            if command == "CAPABILITY":
                self.send(b"* CAPABILITY IMAP4rev1")
            elif command == "LOGIN":
                _user, password = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', arg)[0:2]
                given = (password[0] or password[1]).replace('\\"', '"').replace("\\\\", "\\")
                drop.logins.append(given)
                if given != PASSWORD:
                    self.send(f"{tag} NO login failed".encode())
                    continue
            elif command == "SELECT":
                count = len(drop.messages)
                self.send(f"* {count} EXISTS".encode())
            elif command == "UID SEARCH":
                uids = [str(i + 1) for i in range(len(drop.messages))
                        if i not in drop.deleted and i not in flagged]
                self.send(("* SEARCH " + " ".join(uids)).strip().encode())
            elif command == "UID FETCH":
                uid = int(arg.split()[0])
                body = drop.messages[uid - 1]
                self.wfile.write(f"* {uid} FETCH (UID {uid} BODY[] {{{len(body)}}}\r\n".encode()
                                 + body + b")\r\n")
            elif command == "UID STORE":
                flagged.add(int(arg.split()[0]) - 1)
            elif command == "EXPUNGE":
                for index in sorted(flagged):
                    self.send(f"* {index + 1} EXPUNGE".encode())
                drop.deleted |= flagged
            elif command == "CLOSE":
                drop.deleted |= flagged  # CLOSE expunges too
            elif command == "LOGOUT":
                self.send(b"* BYE")
                self.send(f"{tag} OK LOGOUT completed".encode())
                return
            self.send(f"{tag} OK {command} completed".encode())


class MailServer:
    """A POP3 or IMAP server in a thread; `url` is what CHAPAR_BOUNCE_MAILBOX_URL would say."""

    def __init__(self, protocol: str, maildrop: Maildrop) -> None:
        handler: Any = _Pop3Handler if protocol == "pop3" else _ImapHandler
        self.protocol = protocol
        self.server = _Server(("127.0.0.1", 0), handler)
        self.server.maildrop = maildrop
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"{self.protocol}://{USER}:s3cret%20pass@127.0.0.1:{port}/INBOX"

    def __enter__(self) -> MailServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
