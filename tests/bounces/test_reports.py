"""Reading reports: DSN hard and soft by Status code, ARF complaints, heuristic formats, garbage."""

from __future__ import annotations

from service.bounces.reports import Kind, parse_report
from tests.bounces.messages import (
    GARBAGE,
    PLAIN_MAIL,
    arf_complaint,
    dsn,
    hard_bounce,
    soft_bounce,
)

VERP = "bounces+2s-abcdefghabcdefgh@chapar.test"


def test_a_550_5_1_1_dsn_is_a_hard_bounce_with_its_verp_address() -> None:
    report = parse_report(hard_bounce(VERP, "Gone@Example.test"))
    assert report.is_report
    [failure] = report.failures
    assert failure.kind is Kind.HARD
    assert failure.status == "5.1.1"
    assert failure.recipient == "gone@example.test"
    assert failure.diagnostic is not None and "User unknown" in failure.diagnostic
    assert report.verp_addresses == (VERP,)
    assert report.subject == "Undelivered Mail Returned to Sender"


def test_a_452_4_2_2_dsn_is_soft_even_when_the_mta_gave_up() -> None:
    report = parse_report(soft_bounce(VERP, "full@example.test"))
    [failure] = report.failures
    assert failure.kind is Kind.SOFT
    assert failure.status == "4.2.2"


def test_a_delayed_notice_is_soft() -> None:
    report = parse_report(dsn(VERP, "slow@example.test", status="4.4.1", action="delayed",
                              diagnostic="X-Postfix; connect to mx: Connection timed out"))
    assert [f.kind for f in report.failures] == [Kind.SOFT]


def test_a_delivered_notice_is_no_failure() -> None:
    report = parse_report(dsn(VERP, "ok@example.test", status="2.0.0", action="delivered",
                              diagnostic="smtp; 250 2.0.0 Ok"))
    assert not report.is_report


def test_an_arf_report_is_a_complaint_found_by_the_quoted_return_path() -> None:
    report = parse_report(arf_complaint(VERP, "reader@example.test"))
    [failure] = report.failures
    assert failure.kind is Kind.COMPLAINT
    assert failure.recipient == "reader@example.test"
    assert failure.diagnostic == "feedback-type: abuse"
    assert VERP in report.verp_addresses
    assert report.subject == "FW: خبرنامه هفتگی"


def test_a_qmail_style_bounce_goes_through_flufl_bounce() -> None:
    raw = (
        f"From: MAILER-DAEMON@mx.example.test\r\nTo: {VERP}\r\n"
        "Subject: failure notice\r\n\r\n"
        "Hi. This is the qmail-send program at mx.example.test.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<nobody@example.test>:\r\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
    ).encode("ascii")
    report = parse_report(raw)
    assert [(f.kind, f.recipient) for f in report.failures] == [(Kind.HARD, "nobody@example.test")]
    assert report.verp_addresses == (VERP,)


def test_garbage_and_ordinary_mail_are_no_reports() -> None:
    assert not parse_report(GARBAGE).is_report
    assert not parse_report(PLAIN_MAIL).is_report
    assert not parse_report(b"").is_report
