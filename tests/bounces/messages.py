"""Real-shaped bounce reports: Postfix DSNs (RFC 3464), an ARF complaint (RFC 5965), garbage."""

from __future__ import annotations

ORIGINAL_HEADERS = """\
Return-Path: <{verp}>
From: =?utf-8?b?2K7YqNix2YbYp9mF2Ycg2YfZgdiq2q/bjA==?= <news@chapar.test>
To: {recipient}
Subject: =?utf-8?b?2K7YqNix2YbYp9mF2Ycg2YfZgdiq2q/bjA==?=
Message-ID: <chapar.1.7.0123456789abcdef@chapar.test>
List-Id: <weekly.chapar.test>
Date: Fri, 27 Nov 2026 04:30:00 +0000
"""


def dsn(verp: str, recipient: str, *, status: str, action: str = "failed",
        diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: "
                          "User unknown in virtual mailbox table") -> bytes:
    """A Postfix-style delivery status notification addressed to our VERP return path."""
    diagnostic = diagnostic.format(recipient=recipient)
    text = f"""\
Return-Path: <>
Delivered-To: {verp}
Received: by mx.chapar.test (Postfix) id 4F1A2B3C4D; Fri, 27 Nov 2026 04:31:02 +0000 (UTC)
Date: Fri, 27 Nov 2026 04:31:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B0UND4RY.1732681862/mx.example.test"
Message-Id: <20261127043102.4F1A2B3C4D@mx.example.test>

This is a MIME-encapsulated message.

--B0UND4RY.1732681862/mx.example.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: {diagnostic}

--B0UND4RY.1732681862/mx.example.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test
X-Postfix-Queue-ID: 4F1A2B3C4D
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: Fri, 27 Nov 2026 04:30:01 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mailbox.example.test
Diagnostic-Code: {diagnostic}

--B0UND4RY.1732681862/mx.example.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(verp=verp, recipient=recipient)}
--B0UND4RY.1732681862/mx.example.test--
"""
    return text.replace("\n", "\r\n").encode("ascii")


def hard_bounce(verp: str, recipient: str) -> bytes:
    return dsn(verp, recipient, status="5.1.1")


def soft_bounce(verp: str, recipient: str) -> bytes:
    return dsn(verp, recipient, status="4.2.2",
               diagnostic="smtp; 452 4.2.2 <{recipient}>: Mailbox full, quota exceeded")


def arf_complaint(verp: str, recipient: str) -> bytes:
    """A feedback-loop report: the provider forwards our message with the reader's complaint."""
    text = f"""\
From: <staff@fbl.example.test>
Date: Fri, 27 Nov 2026 09:12:40 +0000
Subject: FW: =?utf-8?b?2K7YqNix2YbYp9mF2Ycg2YfZgdiq2q/bjA==?=
To: <abuse@chapar.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
127.0.0.1 on Fri, 27 Nov 2026 04:30:01 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{verp}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Fri, 27 Nov 2026 04:30:01 +0000
Source-IP: 127.0.0.1
Reported-Domain: chapar.test

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{ORIGINAL_HEADERS.format(verp=verp, recipient=recipient)}Content-Type: text/plain; charset=utf-8

hello
--part1_13d.2e68ed54_boundary--
"""
    return text.replace("\n", "\r\n").encode("ascii")


GARBAGE = b"\x00\xff not a message at all \r\n\r\n\x89PNG\r\n" + bytes(range(256))

PLAIN_MAIL = (b"From: reader@example.test\r\nTo: news@chapar.test\r\nSubject: thanks\r\n\r\n"
              b"Thank you for the newsletter!\r\n")
