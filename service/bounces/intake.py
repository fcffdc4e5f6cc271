"""Take in one bounce or complaint report: store it, and act on the subscriber it names.

A report changes a subscriber only when it carries one of our signed VERP return
paths: the bounce mailbox and the API accept mail from anyone, and a forged
"no such user" must not unsubscribe a stranger. A report we cannot match is still
stored, unlinked, so ops can see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.bounces.reports import Failure, Kind, Report, parse_report
from service.bounces.verp import SUBSCRIBER, VerpSigner
from service.delivery.models import Bounce, Delivery
from service.subscribers.models import Status, Subscriber
from service.subscribers.store import mark_bounced, record


@dataclass(frozen=True)
class SoftBouncePolicy:
    """`limit` soft bounces for different deliveries within `window` mark an address bounced."""

    limit: int = 3
    window: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Intake:
    """What became of one report."""

    outcome: str  # hard | soft | complaint | unmatched | not_a_report
    delivery_id: int | None = None
    subscriber_id: int | None = None
    subscriber_status: str | None = None
    stored: int = 0


def take_report(session: Session, raw: bytes, signer: VerpSigner, now: datetime,
                policy: SoftBouncePolicy, source: str) -> Intake:
    """Parse a raw report, store it as Bounce rows and apply it; never commits."""
    report = parse_report(raw)
    if not report.is_report:
        return Intake("not_a_report")
    delivery, subscriber_id = _matched(session, report, signer)
    delivery_id = delivery.id if delivery else None
    if subscriber_id is None:
        for failure in report.failures:
            session.add(_bounce(failure, now, delivery_id, None, f"unmatched ({source})", report))
        session.flush()
        return Intake("unmatched", delivery_id, stored=len(report.failures))
    failure = _worst(report.failures)
    # A soft bounce of an email outside the ledger (a confirmation) is only stored: the
    # soft-bounce policy counts digests, one per issue.
    repeated_soft = failure.kind is Kind.SOFT and (
        delivery_id is None or _soft_bounce_known(session, delivery_id))
    session.add(_bounce(failure, now, delivery_id, subscriber_id, source, report))
    session.flush()
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return Intake(failure.kind.value, delivery_id, stored=1)
    about = "" if delivery else " (confirmation)"
    detail = f"{failure.kind.value} bounce{about} {failure.status or ''} {failure.diagnostic or ''}"
    if failure.kind is Kind.HARD:
        mark_bounced(session, subscriber_id, now, f"{source}: {detail.strip()}")
    elif failure.kind is Kind.COMPLAINT:
        _mark_complained(session, subscriber, now, source, failure.diagnostic or "")
    elif not repeated_soft:
        subscriber.soft_bounces += 1
        subscriber.updated_at = now
        if _recent_soft_bounces(session, subscriber_id, now - policy.window) >= policy.limit:
            mark_bounced(session, subscriber_id, now,
                         f"{source}: {policy.limit} soft bounces within "
                         f"{policy.window.days} days; last: {detail.strip()}")
    session.flush()
    return Intake(failure.kind.value, delivery_id, subscriber_id, subscriber.status.value, 1)


def take_report_from(session: Session, raw: bytes, secret: str, now: datetime,
                     soft_bounce_limit: int, soft_bounce_window_days: float,
                     source: str) -> Intake:
    """take_report with its collaborators built from plain settings values."""
    policy = SoftBouncePolicy(soft_bounce_limit, timedelta(days=soft_bounce_window_days))
    return take_report(session, raw, VerpSigner(secret), now, policy, source)


def _matched(session: Session, report: Report,
             signer: VerpSigner) -> tuple[Delivery | None, int | None]:
    """The delivery row and the subscriber a report's signed return path names."""
    for address in report.verp_addresses:
        ref = signer.read_address(address)
        if ref is None:
            continue
        if ref.kind == SUBSCRIBER:
            found = session.scalar(select(Subscriber.id).where(Subscriber.id == ref.id))
            return None, found
        delivery = session.get(Delivery, ref.id)
        return delivery, delivery.subscriber_id if delivery else None
    return None, None


def _worst(failures: tuple[Failure, ...]) -> Failure:
    """A VERP report is about one recipient; if it lists several lines, the gravest wins."""
    order = {Kind.COMPLAINT: 0, Kind.HARD: 1, Kind.SOFT: 2}
    return min(failures, key=lambda f: order[f.kind])


def _bounce(failure: Failure, now: datetime, delivery_id: int | None,
            subscriber_id: int | None, source: str, report: Report) -> Bounce:
    detail = " | ".join(x for x in (source, failure.status, failure.diagnostic, report.subject)
                        if x)
    return Bounce(received_at=now, delivery_id=delivery_id, subscriber_id=subscriber_id,
                  kind=failure.kind.value, recipient=(failure.recipient or None),
                  detail=detail[:2000])


def _soft_bounce_known(session: Session, delivery_id: int) -> bool:
    """A delivery already soft-bounced: MTAs send a 'delayed' notice, then another."""
    found = session.scalar(
        select(Bounce.id).where(Bounce.delivery_id == delivery_id, Bounce.kind == Kind.SOFT.value)
        .limit(1)
    )
    return found is not None


def _recent_soft_bounces(session: Session, subscriber_id: int, since: datetime) -> int:
    """Soft bounces for distinct deliveries (one per issue) since `since`."""
    return session.scalar(
        select(func.count(func.distinct(Bounce.delivery_id))).where(
            Bounce.subscriber_id == subscriber_id, Bounce.kind == Kind.SOFT.value,
            Bounce.received_at >= since,
        )
    ) or 0


def _mark_complained(session: Session, subscriber: Subscriber, now: datetime, source: str,
                     detail: str) -> None:
    """The reader called us spam: never mail them again unless they subscribe afresh."""
    if subscriber.status is Status.COMPLAINED:
        return
    subscriber.status = Status.COMPLAINED
    subscriber.complained_at = now
    subscriber.updated_at = now
    record(session, subscriber, "complaint", source, now, detail=detail[:1000] or None)
