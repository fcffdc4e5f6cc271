"""Persian subjects survive RFC 2047 encoding and folding word for word."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest

from service.delivery.message import IssueMessage, Recipient
from service.mail.compose import build_message
from service.mail.headers import encode_unstructured
from service.mail.placeholders import UNSUBSCRIBE_URL
from service.mail.render import RenderedEmail
from service.tokens import Tokens

SUBJECTS = [
    # This one lost the space in «اینترنت ثابت» with Python's own header folder.
    "خبرنامه هفتگی، شمارهٔ ۱: گزارش تازه: سرعت اینترنت ثابت در کشور کاهش یافت",
    "عضویت خود در خبرنامه هفتگی را تأیید کنید",
    ("گزارش‌ها درباره برنامه هسته‌ای " * 6).strip(),
    ("COP31 در Baku: گزارش‌های هفته " * 4).strip(),
    ("plain ASCII subject that is long enough to need folding across more than one line " * 2).strip(),
]

LONG_LIST_NAME = "خبرنامه هفتگی خبرگزاری دانشجویان ایران و جهان امروز"


def decoded_subject(data: bytes) -> str:
    return str(message_from_bytes(data, policy=policy.default)["Subject"])


@pytest.mark.parametrize("subject", SUBJECTS)
def test_encoded_subject_decodes_to_the_same_words(subject: str) -> None:
    header = encode_unstructured("Subject", subject)
    assert all(len(line) <= 78 for line in header.split("\r\n"))
    assert header.isascii()
    assert decoded_subject(header.encode() + b"\r\n\r\n") == subject


@pytest.mark.parametrize("subject", SUBJECTS[:3])
def test_confirmation_and_digest_messages_keep_every_space(subject: str) -> None:
    now = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    rendered = RenderedEmail(subject=subject, text="متن", html="<p>متن</p>")
    single = build_message(rendered, from_name="خبرنامه هفتگی", from_address="news@chapar.test",
                           to="reader@example.com", now=now)
    assert decoded_subject(single.as_bytes()) == subject
    digest = IssueMessage(
        issue_number=1, subject=subject, html=f"<a href='{UNSUBSCRIBE_URL}'>لغو</a>",
        text=f"لغو: {UNSUBSCRIBE_URL}", from_name="خبرنامه هفتگی", from_address="news@chapar.test",
        list_name=LONG_LIST_NAME, list_id="weekly.chapar.test", public_url="http://chapar.test",
        verp_domain="chapar.test", tokens=Tokens("k" * 40, 60), secret="k" * 40,
    ).render(Recipient(1, 1, "reader@example.com", "example.com"), now)
    assert decoded_subject(digest) == subject
    # Every line ends in CRLF: relays refuse bare LF since the SMTP smuggling fixes.
    assert digest.count(b"\n") == digest.count(b"\r\n")
    assert str(message_from_bytes(digest, policy=policy.default)["List-Id"]) == (
        f"{LONG_LIST_NAME} <weekly.chapar.test>")
    assert all(len(line) <= 78 for line in digest.split(b"\r\n\r\n")[0].split(b"\r\n")
               if not line.startswith((b"List-Unsubscribe:", b"Message-ID:", b"Feedback-ID:")))


LONG_NAME = "خبرنامه هفتگی خبرگزاری دانشجویان ایران و جهان امروز"
LONG_ADDRESS = "newsletter-weekly-digest@news.example-long-domain-name.ir"


@pytest.mark.parametrize(("name", "address"), [
    (LONG_NAME, LONG_ADDRESS),
    ("خبرنامه", "n" * 29 + "@example.ir"),  # Python folded this one right after the colon
    ("خبرنامه هفتگی", "n" * 65 + "@example.ir"),  # an address too long for any line
    ("Weekly newsletter of the news agency of the students of Iran and the world", "n@x.ir"),
])
def test_from_is_folded_within_78_in_the_digest_and_in_single_emails(name: str, address: str) -> None:
    now = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    rendered = RenderedEmail(subject="خبرنامه", text="متن", html="<p>متن</p>")
    single = build_message(rendered, from_name=name, from_address=address,
                           to="reader@example.com", now=now).as_bytes()
    digest = IssueMessage(
        issue_number=1, subject="خبرنامه", html=f"<a href='{UNSUBSCRIBE_URL}'>لغو</a>",
        text=f"لغو: {UNSUBSCRIBE_URL}", from_name=name, from_address=address,
        list_name=LONG_LIST_NAME, list_id="weekly.chapar.test", public_url="http://chapar.test",
        verp_domain="chapar.test", tokens=Tokens("k" * 40, 60), secret="k" * 40,
    ).render(Recipient(1, 1, "reader@example.com", "example.com"), now)
    for data in (single, digest):
        head = data.split(b"\r\n\r\n")[0]
        from_lines = head.split(b"\r\nFrom:")[1].split(b"\r\n")
        continued = itertools.takewhile(lambda line: line.startswith(b" "), from_lines[1:])
        from_lines = [b"From:" + from_lines[0], *continued]
        assert from_lines[0].strip() != b"From:"  # not folded right after the colon
        # Longer only where nothing can be folded: one encoded-word or one address alone.
        assert all(len(line) <= 78 or b" " not in line.strip() for line in from_lines), from_lines
        assert all(len(line) <= 78 or b" " not in line.strip() for line in head.split(b"\r\n")
                   if not line.startswith((b"List-Unsubscribe:", b"Message-ID:", b"Feedback-ID:")))
        parsed = str(make_header(decode_header(
            b" ".join(line.strip() for line in from_lines)[5:].decode().strip())))
        assert parsed == f"{name} <{address}>"
