"""Bounces that arrive after the send: VERP matching, report parsing, intake, the mailbox poller."""
