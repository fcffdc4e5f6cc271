"""The pipelining SMTP client against a server that offers PIPELINING, and DKIM signatures."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.delivery.dkim import DkimSigner
from service.delivery.message import IssueMessage, Recipient
from service.delivery.transport import Envelope as Outgoing
from service.delivery.transport import SmtpConnection, classify
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


def test_dkim_signature_verifies_and_covers_the_bulk_headers() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    message = IssueMessage(
        issue_number=3, subject="خبرنامه هفتگی، شماره ۳", html=issue_html(3),
        text="لغو: %%CHAPAR_UNSUBSCRIBE_URL%%\n", from_name="خبرنامه هفتگی",
        from_address="news@chapar.test", list_name="خبرنامه هفتگی", list_id="weekly.chapar.test",
        public_url="http://chapar.test", verp_domain="chapar.test", tokens=Tokens("k" * 40, 60),
        secret="k" * 40, dkim=DkimSigner(pem, "chapar.test", "s1"),
    )
    data = message.render(Recipient(1, 2, "reader@example.test"), datetime.now(UTC))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.chapar.test."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    signature = dkim.DKIM(data)
    signed = data.split(b"\r\n\r\n", 1)[0].split(b"h=", 1)[1].split(b";", 1)[0].lower()
    for header in (b"list-unsubscribe-post", b"feedback-id", b"list-unsubscribe", b"from", b"subject"):
        assert header in signed
    assert signature is not None
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click")
    assert not dkim.verify(tampered, dnsfunc=dns)
