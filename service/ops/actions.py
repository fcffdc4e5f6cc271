"""What ops may do about what the console shows; each change is audited, from the desk or the CLI.

Pause, resume and cancel a send (delivery.control), pause and resume a receiving
domain (the throttle's shared pause), retry deferred rows now, settle uncertain rows
(resend them, or record them as sent), drain a worker. Each commits, then rings the
workers when there is new work; none ever resends a row that is `sent`.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import control, ledger
from service.delivery.models import Delivery, DeliveryStatus
from service.delivery.throttle import Throttle
from service.digests.models import Issue, IssueStatus
from service.ops import workers
from service.runtime import Runtime
from service.staff import audit
from service.staff.audit import Actor

DOMAIN_PAUSE = timedelta(days=7)  # a hand-made domain pause lasts until resumed, or this long


class ActionRefused(Exception):
    """The action does not apply now (a message people read)."""


class Settle(StrEnum):
    RESEND = "resend"  # at least once: the reader may get a second copy
    AS_SENT = "sent"  # at most once: the server probably took it


def issue_id(session: Session, number: int) -> int:
    found = session.scalar(select(Issue.id).where(Issue.number == number))
    if found is None:
        raise ActionRefused(f"شماره‌ای با عدد {number} نیست")
    return found


def change_send(rt: Runtime, actor: Actor, action: str, number: int, now: datetime) -> str:
    """pause | resume | cancel one issue's send."""
    with unit_of_work(rt.sessions) as session:
        found = issue_id(session, number)
        try:
            if action == "pause":
                control.pause(session, found)
                result = "ارسال مکث شد"
            elif action == "resume":
                control.resume(session, found)
                result = "ارسال ادامه یافت"
            elif action == "cancel":
                result = f"{control.cancel(session, found, now)} ردیف لغو شد"
            else:
                raise ActionRefused(f"کار ناشناخته: {action}")
        except control.ControlError as exc:
            raise ActionRefused(str(exc)) from exc
        audit.record(session, actor, f"ops.{action}-send", f"issue:{number}", now, result)
    if action == "resume":
        control.ring(rt, found)
    return result


def retry_deferred(session: Session, issue_id: int, now: datetime) -> int:
    """Deferred rows become due now (the back-off is skipped); returns how many."""
    result = session.execute(
        update(Delivery).where(Delivery.issue_id == issue_id, *ledger.deferred())
        .values(next_attempt_at=now, updated_at=now).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def settle_uncertain(session: Session, issue_id: int, how: Settle, now: datetime,
                     retry_for: timedelta) -> int:
    """Uncertain rows: resent (due now) or recorded as sent; returns how many.

    Either way the row keeps its `uncertain_count`: the possible duplicate stays on record.
    """
    values: dict[str, object] = {"updated_at": now}
    if how is Settle.RESEND:
        values.update(status=DeliveryStatus.DEFERRED, next_attempt_at=now, give_up_at=now + retry_for)
    else:
        values.update(status=DeliveryStatus.SENT, sent_at=now,
                      last_error="outcome unknown; recorded as sent by ops")
    result = session.execute(
        update(Delivery).where(Delivery.issue_id == issue_id,
                               Delivery.status == DeliveryStatus.UNCERTAIN)
        .values(**values).execution_options(synchronize_session=False))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    issue = session.get(Issue, issue_id, with_for_update=True)
    if how is Settle.RESEND and count and issue is not None and issue.status is IssueStatus.SENT:
        issue.status, issue.finished_at = IssueStatus.SENDING, None
    return count


def retry_deferred_now(rt: Runtime, actor: Actor, number: int, now: datetime) -> str:
    with unit_of_work(rt.sessions) as session:
        found = issue_id(session, number)
        count = retry_deferred(session, found, now)
        result = f"{count} ردیف عقب‌افتاده همین حالا دوباره تلاش می‌شود"
        audit.record(session, actor, "ops.retry-deferred", f"issue:{number}", now, result)
    if count:
        control.ring(rt, found)
    return result


def settle(rt: Runtime, actor: Actor, number: int, how: Settle, now: datetime) -> str:
    with unit_of_work(rt.sessions) as session:
        found = issue_id(session, number)
        count = settle_uncertain(session, found, how, now,
                                 timedelta(hours=rt.settings.retry_for_hours))
        done = "دوباره فرستاده می‌شود" if how is Settle.RESEND else "فرستاده‌شده ثبت شد"
        result = f"{count} ردیف نامعلوم {done}"
        audit.record(session, actor, f"ops.settle-uncertain-{how.value}", f"issue:{number}", now,
                     result)
    if count and how is Settle.RESEND:
        control.ring(rt, found)
    return result


def pause_domain(rt: Runtime, actor: Actor, domain: str, now: datetime) -> str:
    domain = domain.strip().lower()
    try:
        Throttle(rt.settings).pause_domain_until(domain, time.time() + DOMAIN_PAUSE.total_seconds())
    except RuntimeError as exc:
        raise ActionRefused("مکث دامنه به Redis نیاز دارد (CHAPAR_REDIS_URL)") from exc
    with unit_of_work(rt.sessions) as session:
        audit.record(session, actor, "ops.pause-domain", f"domain:{domain}", now)
    return f"ارسال به {domain} مکث شد"


def resume_domain(rt: Runtime, actor: Actor, domain: str, now: datetime) -> str:
    """End the pause; rows deferred by it become due now."""
    domain = domain.strip().lower()
    Throttle(rt.settings).resume_domain(domain)
    with unit_of_work(rt.sessions) as session:
        session.execute(
            update(Delivery).where(Delivery.domain == domain,
                                   Delivery.status == DeliveryStatus.DEFERRED,
                                   Delivery.next_attempt_at > now)
            .values(next_attempt_at=now, updated_at=now).execution_options(synchronize_session=False))
        sending = list(session.scalars(select(Issue.id).where(Issue.status == IssueStatus.SENDING)))
        audit.record(session, actor, "ops.resume-domain", f"domain:{domain}", now)
    for found in sending:
        control.ring(rt, found)
    return f"ارسال به {domain} ادامه یافت"


def drain_worker(rt: Runtime, actor: Actor, name: str, now: datetime) -> str:
    workers.drain(rt, name, now)
    with unit_of_work(rt.sessions) as session:
        audit.record(session, actor, "ops.drain-worker", f"worker:{name}", now)
    return f"کارگر {name} کار تازه نمی‌گیرد"
