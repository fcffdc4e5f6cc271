"""The pipelining SMTP client against a server that offers PIPELINING, and DKIM signatures."""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from service.delivery import transport
from service.delivery.dkim import DkimSigner
from service.delivery.message import IssueMessage, Recipient
from service.delivery.transport import Envelope as Outgoing
from service.delivery.transport import SmtpConnection, SmtpError, classify
from service.settings import SmtpTarget
from service.tokens import Tokens
from tests.delivery.conftest import free_port
from tests.delivery.factories import issue_html


class PipeliningHandler:
    """Records messages; refuses the recipients it is told to; offers PIPELINING."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}
        self.transcript: list[str] = []

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos),
                              envelope.original_content or b""))
        return "250 OK"


@pytest.fixture
def pipelining_server() -> Iterator[tuple[PipeliningHandler, SmtpTarget]]:
    handler = PipeliningHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, SmtpTarget(host="127.0.0.1", port=port)
    controller.stop()


def test_pipelined_messages_each_get_their_own_outcome(
        pipelining_server: tuple[PipeliningHandler, SmtpTarget]) -> None:
    handler, target = pipelining_server
    handler.refuse = {"r3@x.test": "550 5.1.1 no such user", "r5@x.test": "451 4.7.1 later"}
    connection = SmtpConnection(target)
    connection.open()
    assert connection.pipelining
    body = b"Subject: hi\r\n\r\n.starts with a dot\r\n" + b"line\r\n" * 2000
    envelopes = [Outgoing("bounces+1@x.test", f"r{i}@x.test", body) for i in range(10)]
    results = connection.send_many(envelopes)
    kinds = [r.kind for r in results]
    assert kinds == ["sent"] * 3 + ["failed", "sent", "deferred"] + ["sent"] * 4
    assert results[3].mailbox_gone and not results[5].mailbox_gone
    assert [rcpts[0] for _, rcpts, _ in handler.received] == [
        f"r{i}@x.test" for i in (0, 1, 2, 4, 6, 7, 8, 9)]
    # Dot-stuffing: the server reads back exactly what was meant.
    assert handler.received[0][2].replace(b"\r\n", b"\n") == body.replace(b"\r\n", b"\n")
    # The connection stays usable for the next chunk.
    assert [r.kind for r in connection.send_many(envelopes[:2])] == ["sent", "sent"]
    connection.close()


@pytest.mark.parametrize("body", [
    b"Subject: a.b.c\r\n\r\n" + b"end. of. sentence.\r\n" * 20 + b".late dot line\r\n",
    b"Subject: a.b.c\r\n\r\n" + b"end. of. sentence.\r\n" * 20,
    b".first\r\nx\r\n",
    b"To: x@y.test\r\n\r\n" + base64.encodebytes(bytes(range(256)) * 40).replace(b"\n", b"\r\n"),
])
def test_a_line_starting_with_a_dot_arrives_intact_wherever_it_is(
        pipelining_server: tuple[PipeliningHandler, SmtpTarget], body: bytes) -> None:
    # Many dots that do not start a line before the one that does: it is found and doubled.
    handler, target = pipelining_server
    connection = SmtpConnection(target)
    connection.open()
    assert [r.kind for r in connection.send_many([Outgoing("a@x.test", "b@x.test", body)])] == [
        "sent"]
    connection.close()
    assert handler.received[-1][2].replace(b"\r\n", b"\n") == body.replace(b"\r\n", b"\n")


BIG = (b"QUJD" * 19 + b"\r\n") * 20  # base64-like lines


@pytest.mark.parametrize(("pieces", "stuffed"), [
    ((b"Subject: x\r\n\r\n", BIG * 60, b"end\r\n"), False),
    # A dot that starts a line only once the pieces are put together.
    ((b"Subject: x\r\n\r\n", BIG * 60, b".tail\r\n"), True),
    ((b"Subject: x\r\n", b"\r\n.", b"x\r\n"), True),
    ((b".first", b"\r\n"), True),
    # A dot at the start of a piece that does not start a line stays single.
    ((b"Subject: x\r\n\r\nab", b".cd\r\n"), False),
    ((b"Subject: x\r\n\r\n", BIG * 60 + b".big\r\n" + BIG), True),
])
def test_a_message_in_pieces_arrives_as_one_with_its_dots_doubled_where_lines_start(
        pipelining_server: tuple[PipeliningHandler, SmtpTarget], pieces: tuple[bytes, ...],
        stuffed: bool) -> None:
    handler, target = pipelining_server
    assert transport._needs_stuffing(list(pieces)) is stuffed
    connection = SmtpConnection(target)
    connection.open()
    envelopes = [Outgoing("a@x.test", "b@x.test", pieces), Outgoing("a@x.test", "c@x.test", pieces)]
    assert [r.kind for r in connection.send_many(envelopes)] == ["sent", "sent"]
    connection.close()
    whole = b"".join(pieces)
    for received in handler.received:
        assert received[2].replace(b"\r\n", b"\n") == whole.replace(b"\r\n", b"\n")


def test_a_message_its_builder_vouches_for_goes_out_as_it_is(
        pipelining_server: tuple[PipeliningHandler, SmtpTarget]) -> None:
    # A digest (IssueMessage.render_parts) has no line that starts with a dot: its
    # pieces are written unsearched and arrive byte for byte, one after another.
    handler, target = pipelining_server
    message = IssueMessage(
        issue_number=4, subject="خبرنامه", html=issue_html(4), text="لغو: %%CHAPAR_UNSUBSCRIBE_URL%%\n",
        from_name="خبرنامه", from_address="news@chapar.test", list_name="خبرنامه",
        list_id="weekly.chapar.test", public_url="http://chapar.test", verp_domain="chapar.test",
        tokens=Tokens("k" * 40, 60), secret="k" * 40,
    )
    now = datetime.now(UTC)
    recipients = [Recipient(i, i, f"r{i}@example.test", "example.test") for i in (1, 2, 3)]
    envelopes = [Outgoing("a@x.test", r.email, message.render_parts(r, now), dot_free=True)
                 for r in recipients]
    connection = SmtpConnection(target)
    connection.open()
    assert [r.kind for r in connection.send_many(envelopes)] == ["sent"] * 3
    connection.close()
    assert [received[2] for received in handler.received[-3:]] == [
        message.render(r, now) for r in recipients]


def test_a_closed_server_defers_without_attempting(
        pipelining_server: tuple[PipeliningHandler, SmtpTarget]) -> None:
    _, target = pipelining_server
    connection = SmtpConnection(target)
    connection.open()
    assert connection.sock is not None
    connection.sock.close()  # as if the network went away between chunks
    results = connection.send_many([Outgoing("a@x.test", "b@x.test", b"Subject: x\r\n\r\nx\r\n")])
    assert results[0].kind == "deferred"


def test_reply_classification() -> None:
    assert classify(421, "4.7.0 slow down").slows_domain
    assert classify(452, "4.2.2 mailbox full").kind == "deferred"
    assert classify(550, "5.7.1 spam").kind == "failed" and not classify(550, "5.7.1 spam").mailbox_gone
    assert classify(550, "Requested action not taken: mailbox unavailable").mailbox_gone
    assert classify(554, "5.1.1 whatever").kind == "failed" and not classify(554, "x").mailbox_gone


def dkim_key(kind: str) -> tuple[bytes, bytes]:
    """A fresh private key (PEM) and the DNS TXT record that publishes its public half."""
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    else:  # RFC 8463 4.2: p= is the raw 32-byte public key
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, f"v=DKIM1; k={kind}; p=".encode() + base64.b64encode(public)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_dkim_signature_verifies_and_covers_the_bulk_headers(kind: str) -> None:
    # dkimpy (with PyNaCl for ed25519) is the independent verifier.
    pem, record = dkim_key(kind)
    message = IssueMessage(
        issue_number=3, subject="خبرنامه هفتگی، شماره ۳", html=issue_html(3),
        text="لغو: %%CHAPAR_UNSUBSCRIBE_URL%%\n", from_name="خبرنامه هفتگی",
        from_address="news@chapar.test", list_name="خبرنامه هفتگی", list_id="weekly.chapar.test",
        public_url="http://chapar.test", verp_domain="chapar.test", tokens=Tokens("k" * 40, 60),
        secret="k" * 40, dkim=DkimSigner(pem, "chapar.test", "s1"),
    )
    data = message.render(Recipient(1, 2, "reader@example.test", "example.test"), datetime.now(UTC))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.chapar.test."
        return record

    assert f"a={kind}-sha256;".encode() in data.split(b"\r\n\r\n", 1)[0]
    assert dkim.verify(data, dnsfunc=dns)
    signature = dkim.DKIM(data)
    signed = data.split(b"\r\n\r\n", 1)[0].split(b"h=", 1)[1].split(b";", 1)[0].lower()
    for header in (b"list-unsubscribe-post", b"feedback-id", b"list-unsubscribe", b"from", b"subject"):
        assert header in signed
    assert signature is not None
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click")
    assert not dkim.verify(tampered, dnsfunc=dns)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_and_auth_as_the_smtp_url_says(tmp_path: Path, mode: str) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret", handled=False)

    handler = PipeliningHandler()
    port = free_port()
    options: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": True}
    if mode == "starttls":
        options.update(tls_context=server_tls, require_starttls=True)
    else:  # aiosmtpd only counts STARTTLS as TLS for its auth_require_tls check
        options.update(ssl_context=server_tls, auth_require_tls=False)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        scheme = "smtp+starttls" if mode == "starttls" else "smtps"
        target = SmtpTarget.from_url(f"{scheme}://news:s3cret@127.0.0.1:{port}")
        client_tls = ssl.create_default_context(cafile=str(cert))
        connection = SmtpConnection(target, tls=client_tls)
        connection.open()
        assert isinstance(connection.sock, ssl.SSLSocket)
        results = connection.send_many([Outgoing("a@x.test", "b@x.test", b"Subject: x\r\n\r\nbody\r\n")])
        assert [r.kind for r in results] == ["sent"] and len(handler.received) == 1
        assert logins == [(b"news", b"s3cret")]
        connection.close()

        wrong = SmtpConnection(SmtpTarget.from_url(f"{scheme}://news:wrong@127.0.0.1:{port}"),
                               tls=client_tls)
        with pytest.raises(SmtpError) as refused:
            wrong.open()
        assert refused.value.code == 535
        # An unverifiable certificate is refused: no silent downgrade to trusting anyone.
        with pytest.raises(SmtpError):
            SmtpConnection(target).open()
    finally:
        controller.stop()


class ResetAfterDotHandler(PipeliningHandler):
    """Takes the message, then resets the connection (RST) instead of answering."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await super().handle_DATA(server, session, envelope)
        transport = server.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return "250 OK"  # never reaches the client


def test_a_reset_after_the_final_dot_is_uncertain_not_deferred() -> None:
    """The server may have delivered it: resending must be on record as a possible duplicate."""
    handler = ResetAfterDotHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        connection = SmtpConnection(SmtpTarget(host="127.0.0.1", port=port))
        connection.open()
        envelopes = [Outgoing("a@x.test", f"r{i}@x.test", b"Subject: x\r\n\r\nx\r\n") for i in range(2)]
        results = connection.send_many(envelopes)
    finally:
        controller.stop()
    assert len(handler.received) == 1
    assert results[0].kind == "uncertain", results[0]
    assert results[1].kind == "deferred"
