"""Entry points that own a transaction: one report from the API, or a mailbox poll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from service.bounces.intake import Intake, SoftBouncePolicy, take_report
from service.bounces.mailbox import Mailbox, PollResult, poll
from service.bounces.verp import VerpSigner
from service.runtime import Runtime


def policy_of(rt: Runtime) -> SoftBouncePolicy:
    return SoftBouncePolicy(rt.settings.soft_bounce_limit,
                            timedelta(days=rt.settings.soft_bounce_window_days))


def receive_report(rt: Runtime, raw: bytes, now: datetime, source: str) -> Intake:
    """Take one raw report in its own transaction, committed on return."""
    with rt.sessions.begin() as session:
        return take_report(session, raw, VerpSigner(rt.tokens), now,
                           policy_of(rt), source)


def poll_bounce_mailbox(rt: Runtime, clock: Callable[[], datetime]) -> PollResult | None:
    """Drain the configured bounce mailbox; None when no mailbox is configured."""
    url = rt.settings.bounce_mailbox_url
    if not url:
        return None
    mailbox = Mailbox.from_url(url)
    signer = VerpSigner(rt.tokens)
    policy = policy_of(rt)
    source = f"mailbox:{mailbox.protocol}"

    def take_one(raw: bytes) -> None:
        with rt.sessions.begin() as session:
            take_report(session, raw, signer, clock(), policy, source)

    from service.ops import marks

    try:
        result = poll(mailbox, take_one)
    except Exception as exc:  # the ops console shows the last poll and its error
        with rt.sessions.begin() as session:
            marks.record(session, marks.BOUNCE_POLL, clock(), str(exc) or type(exc).__name__)
        raise
    with rt.sessions.begin() as session:
        marks.record(session, marks.BOUNCE_POLL, clock())
    return result
