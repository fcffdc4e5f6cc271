"""The pre-built message: per-recipient parts, fast tokens identical to the reader's links."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import message_from_bytes, policy

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from service.bounces.verp import read_verp
from service.delivery.dkim import DkimSigner
from service.delivery.message import IssueMessage, LastingSigner, Recipient, _b64_lines
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL
from service.tokens import MAX_ID, Purpose, Tokens
from tests.delivery.factories import issue_html

TOKENS = Tokens("a-secret-that-is-long-enough-for-the-test-0123", 3600)
# After a rotation: the old secret still reads links, the new one signs them.
ROTATED = Tokens("the-secret-after-a-rotation-long-enough-45678", 3600,
                 fallback_keys=[TOKENS.secret_keys[-1]])


@given(st.integers(min_value=1, max_value=MAX_ID), st.sampled_from(list(Purpose)),
       st.sampled_from([TOKENS, ROTATED]))
def test_fast_tokens_are_the_tokens_the_reader_pages_accept(number: int, purpose: Purpose,
                                                            tokens: Tokens) -> None:
    token = LastingSigner(tokens, purpose)(number)
    assert token == tokens.lasting(purpose, number)
    assert tokens.read_lasting(purpose, token) == number
    current_only = Tokens(tokens.secret_keys[-1], 3600)  # signed with the current secret
    assert current_only.read_lasting(purpose, token) == number


def test_each_reader_gets_a_valid_mime_message_with_their_own_links() -> None:
    html = issue_html(5)
    text = f"متن خبرنامه\nلغو: {UNSUBSCRIBE_URL}\n"
    message = IssueMessage(
        issue_number=5, subject="خبرنامه هفتگی، شماره ۵", html=html, text=text,
        from_name="خبرنامه هفتگی", from_address="news@chapar.test", list_name="خبرنامه هفتگی",
        list_id="weekly.chapar.test", public_url="http://chapar.test/", verp_domain="bounce.test",
        tokens=TOKENS, secret="s" * 32,
    )
    now = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)
    for subscriber_id in (1, 42, 100_000):
        recipient = Recipient(9, subscriber_id, f"r{subscriber_id}@example.test", "example.test")
        data = message.render(recipient, now)
        pieces = message.render_parts(recipient, now)
        assert b"".join(pieces) == data
        # The bodies' big pieces, encoded once, are the same objects in every message.
        assert max(pieces, key=len) is max(message.render_parts(recipient, now), key=len)
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        parsed = message_from_bytes(data, policy=policy.default)
        unsubscribe = TOKENS.lasting(Purpose.UNSUBSCRIBE, subscriber_id)
        preferences = TOKENS.lasting(Purpose.PREFERENCES, subscriber_id)
        links = {
            UNSUBSCRIBE_URL: f"http://chapar.test/unsubscribe/{unsubscribe}?i=5",  # the issue
            PREFERENCES_URL: f"http://chapar.test/preferences/{preferences}",
        }
        plain, rich = (part.get_content() for part in parsed.iter_parts())
        expected_html = html.replace(UNSUBSCRIBE_URL, links[UNSUBSCRIBE_URL]).replace(
            PREFERENCES_URL, links[PREFERENCES_URL])
        assert rich == expected_html
        assert plain == text.replace(UNSUBSCRIBE_URL, links[UNSUBSCRIBE_URL])
        assert rich.count("\u200c") == html.count("\u200c")  # half-spaces survive
        assert parsed["List-Unsubscribe"] == f"<{links[UNSUBSCRIBE_URL]}>"
        assert parsed["To"] == f"r{subscriber_id}@example.test"
        assert str(parsed["Subject"]) == "خبرنامه هفتگی، شماره ۵"
        for part in parsed.iter_parts():
            assert part["Content-Transfer-Encoding"] == "base64"
    sender = message.envelope_sender(9)
    assert sender.endswith("@bounce.test") and read_verp(TOKENS, sender) == 9
    assert read_verp(TOKENS, sender.replace("bounces+", "bounces+x")) is None


# Text that tries to put a dot at a line's start: dots after line ends, leading dots.
DOTTY = st.text(st.sampled_from([".", "\r", "\n", "a", "ی", " ", "\u200c", "=", ":"]),
                max_size=80)


@given(subject=DOTTY, from_name=DOTTY, list_name=DOTTY, body=DOTTY, signed=st.booleans())
def test_no_line_of_a_message_starts_with_a_dot_so_it_needs_no_stuffing(
        subject: str, from_name: str, list_name: str, body: str, signed: bool) -> None:
    # The sender writes these messages unsearched (Envelope.dot_free): whatever the
    # editor typed, every line is a header, a boundary or base64, and the last one ends.
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    message = IssueMessage(
        issue_number=7, subject=subject, html=f"<p>{body}</p>{UNSUBSCRIBE_URL}",
        text=f"{body}\n.{UNSUBSCRIBE_URL}\n", from_name=from_name,
        from_address="news@chapar.test", list_name=list_name, list_id="weekly.chapar.test",
        public_url="http://chapar.test", verp_domain="chapar.test", tokens=TOKENS,
        secret="s" * 32, dkim=DkimSigner(pem, "chapar.test", "s1") if signed else None,
    )
    data = message.render(Recipient(3, 4, ".r@example.test", "example.test"), datetime.now(UTC))
    assert not data.startswith(b".") and b"\n." not in data
    assert data.endswith(b"\r\n")


@given(st.binary(max_size=2000))
def test_base64_lines_are_the_standard_76_character_lines_with_crlf(data: bytes) -> None:
    assert _b64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")
