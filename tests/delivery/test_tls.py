"""TLS to the relay: a private CA is trusted when configured, and only then; names are checked."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.clock import utcnow
from service.delivery.transport import Envelope, SmtpError, connection_for
from service.runtime import Runtime
from service.settings import Settings
from service.subscribers import emails
from tests.conftest import make_settings
from tests.subscribers.test_emails import subscribe
from tests.support.smtp import SmtpRecorder
from tests.support.tls import SERVER_NAME, MadeCa, make_ca

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


@pytest.fixture(params=["starttls", "implicit"])
def tls_relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MadeCa, SmtpRecorder]]:
    """A relay whose certificate names mail.chapar.test (not 127.0.0.1), from a CA made here."""
    ca = make_ca(tmp_path / "ca")
    server = SmtpRecorder(tls=ca.server_context(), implicit=request.param == "implicit").start()
    yield ca, server
    server.stop()


def settings(tmp_path: Path, relay: SmtpRecorder, **overrides: object) -> Settings:
    return make_settings(tmp_path, smtp_url=relay.url, **overrides)


def refusal(s: Settings) -> SmtpError:
    with pytest.raises(SmtpError) as refused:
        connection_for(s, timeout=10).open()
    return refused.value


def test_the_relay_is_trusted_only_with_its_ca_and_its_name(
        tls_relay: tuple[MadeCa, SmtpRecorder], tmp_path: Path) -> None:
    ca, relay = tls_relay
    # The system store does not know a private CA: refused, and the reason says so.
    error = refusal(settings(tmp_path, relay, smtp_tls_server_name=SERVER_NAME))
    assert error.step == "tls" and "certificate verify failed" in str(error)
    # The CA is trusted, but the URL's host is an address the certificate does not name.
    error = refusal(settings(tmp_path, relay, smtp_ca_file=ca.ca_file))
    assert error.step == "tls" and "IP address mismatch" in str(error)
    # The CA and the name the certificate carries: verified, and the mail goes out.
    connection = connection_for(settings(tmp_path, relay, smtp_ca_file=ca.ca_file,
                                         smtp_tls_server_name=SERVER_NAME), timeout=10)
    connection.open()
    assert isinstance(connection.sock, ssl.SSLSocket)
    assert connection.sock.server_hostname == SERVER_NAME  # also the SNI
    [result] = connection.send_many([Envelope("a@chapar.test", "b@example.com", MESSAGE)])
    assert result.kind == "sent" and len(relay.messages) == 1
    connection.close()
    # Some other name is refused even with the CA: the host name is checked.
    error = refusal(settings(tmp_path, relay, smtp_ca_file=ca.ca_file,
                             smtp_tls_server_name="other.chapar.test"))
    assert error.step == "tls" and "mismatch" in str(error)


def test_the_confirmation_goes_out_over_tls_to_a_relay_of_a_private_ca(
        tls_relay: tuple[MadeCa, SmtpRecorder], runtime: Runtime, tmp_path: Path) -> None:
    ca, relay = tls_relay
    rt = Runtime(settings=settings(tmp_path, relay, database_url=runtime.settings.database_url,
                                   smtp_ca_file=ca.ca_file, smtp_tls_server_name=SERVER_NAME),
                 engine=runtime.engine, sessions=runtime.sessions, tokens=runtime.tokens)
    sid = subscribe(rt, "tls@example.com")
    assert emails.send_confirmation(rt, sid, utcnow())
    assert relay.counts()["tls@example.com"] == 1


def test_unverified_tls_works_in_development_and_is_refused_in_production(
        tls_relay: tuple[MadeCa, SmtpRecorder], tmp_path: Path) -> None:
    _ca, relay = tls_relay
    connection = connection_for(settings(tmp_path, relay, smtp_tls_verify=False), timeout=10)
    connection.open()
    connection.close()
    with pytest.raises(ValidationError, match="CHAPAR_SMTP_TLS_VERIFY=false"):
        Settings(environment="production", secret_key="0123456789abcdef" * 3, smtp_tls_verify=False)


def test_a_plain_relay_connection_loads_no_certificates(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading the system's CAs takes 20 ms a connection; a plain relay never needs them.
    def no_context(*_: object, **__: object) -> ssl.SSLContext:
        raise AssertionError("a TLS context was made for a plain connection")

    monkeypatch.setattr(ssl, "create_default_context", no_context)
    relay = SmtpRecorder().start()
    try:
        connection = connection_for(settings(tmp_path, relay), timeout=10)
        connection.open()
        [result] = connection.send_many([Envelope("a@chapar.test", "b@example.com", MESSAGE)])
        connection.close()
    finally:
        relay.stop()
    assert result.kind == "sent" and len(relay.messages) == 1
