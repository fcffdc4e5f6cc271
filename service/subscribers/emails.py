"""The confirmation email: owed once per request, mailed once, re-rung if its ring was lost.

The subscriber row is the truth. `confirmation_requested_at` says an email is owed
(set by the web request that claimed it); `confirmation_mailed_at` says the SMTP
server accepted it. A task that finds the email already mailed for the current
request does nothing, and the sweeper rings again for requests that were never
mailed, so a lost broker message delays a confirmation but never loses it.

Two senders must never both mail one request. On PostgreSQL the row stays locked
across the SMTP conversation: a second sender waits for it (at most LOCK_WAIT) and
then finds the request mailed. It must wait rather than skip the row, for the lock
it meets is as often a web request's: a reader who presses the button again holds
the row for a few milliseconds, and a sender that skipped it then would leave the
email to the sweeper, minutes later. On SQLite, where a lock held across SMTP would
stall the web process, a sender first claims the request with a conditional UPDATE
of `confirmation_mailing_at` and releases the claim when it is done. If the database
connection drops after the SMTP server accepted the email and before the commit, a
note in Redis (MAILED_NOTE_SECONDS) keeps the next sender from mailing it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.bounces.verp import SUBSCRIBER, VerpRef
from service.db import is_sqlite, unit_of_work
from service.delivery import outbox
from service.delivery.transport import Result
from service.mail.render import RenderedEmail
from service.persian import single_line
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber
from service.subscribers.store import CONFIRMATION_INTERVAL, mark_bounced

log = logging.getLogger(__name__)

SEND_CONFIRMATION = "chapar.send_confirmation"
# Long enough for a healthy worker (and its retries) to have mailed it; short enough
# that a reader waiting for the email is not left waiting long.
SWEEP_AFTER = timedelta(minutes=5)
SWEEP_BATCH = 1000
# While SMTP is down, a rung task is still retrying with back-off; ringing again every
# minute would only pile up copies of it. Where Redis is at hand, ring at most this often.
RERING_AFTER = timedelta(minutes=15)
# A claim older than this belongs to a sender that died mid-conversation (SIGKILL,
# power loss): the request is owed again. Far above one SMTP conversation's timeouts.
CLAIM_EXPIRES_AFTER = timedelta(minutes=10)
# How long a PostgreSQL sender waits for a subscriber row someone else holds: far
# above a web request's hold, and above a healthy SMTP conversation's.
LOCK_WAIT = timedelta(seconds=10)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout runs out


# Where Redis is at hand, an accepted email is noted there (for a day) before the database
# records it: if the database connection drops in between, the next sender finds the note
# and records the email instead of mailing it again. Without Redis (the embedded setup,
# one local file) the reader may then get a second copy.
MAILED_NOTE_SECONDS = int(CONFIRMATION_INTERVAL.total_seconds())


class ConfirmationBusy(Exception):
    """Another transaction held the subscriber row past LOCK_WAIT; ask again later."""


@dataclass(frozen=True)
class OwedConfirmation:
    subscriber_id: int
    address: str
    requested_at: datetime
    nonce: str | None  # the subscription request its link confirms


def confirmation_context(rt: Runtime, subscriber_id: int, nonce: str | None) -> dict[str, object]:
    """Everything the confirm templates need, as JSON-safe values."""
    s = rt.settings
    context: dict[str, object] = {
        "list_name": s.list_name,
        "confirm_url": rt.url(f"/confirm/{rt.tokens.confirm(subscriber_id, nonce)}"),
        "expires_days": max(1, s.confirm_token_max_age // 86400),
        "sender_name": s.from_name,
        "sender_address": s.from_address,
    }
    # The HTML <title> shows the subject, so render it first from its own template.
    subject = rt.email_templates.env.get_template("confirm/subject.txt").render(context)
    context["subject"] = single_line(subject)
    return context


def render_confirmation(rt: Runtime, subscriber_id: int, nonce: str | None) -> RenderedEmail:
    return rt.email_templates.render("confirm", confirmation_context(rt, subscriber_id, nonce))


def owed_confirmation(session: Session, subscriber_id: int, *, lock: bool) -> OwedConfirmation | None:
    """The confirmation this subscriber is owed now, or None if nothing is owed.

    With `lock` (PostgreSQL), the row stays locked until the caller's transaction
    ends. A concurrent holder is waited for, so this reads the row as it left it (a
    sender's "mailed"); past LOCK_WAIT, PostgreSQL raises lock_timeout's error.
    """
    query = select(Subscriber).where(Subscriber.id == subscriber_id)
    if lock:
        wait_ms = int(LOCK_WAIT.total_seconds() * 1000)
        session.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
        query = query.with_for_update()
    subscriber = session.scalars(query).one_or_none()
    if subscriber is None or subscriber.status is not Status.PENDING:
        return None
    requested = subscriber.confirmation_requested_at
    mailed = subscriber.confirmation_mailed_at
    if requested is None or (mailed is not None and mailed >= requested):
        return None
    return OwedConfirmation(subscriber.id, subscriber.email, requested, subscriber.confirm_nonce)


def claim_confirmation(session: Session, owed: OwedConfirmation, now: datetime) -> bool:
    """Claim the owed email for one sender; False if it was mailed or another sender holds it.

    One conditional UPDATE, so of two senders that both saw it owed exactly one wins.
    """
    mailed = Subscriber.confirmation_mailed_at
    mailing = Subscriber.confirmation_mailing_at
    claimed = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == owed.subscriber_id,
            Subscriber.status == Status.PENDING,
            Subscriber.confirmation_requested_at == owed.requested_at,
            or_(mailed.is_(None), mailed < owed.requested_at),
            or_(mailing.is_(None), mailing < now - CLAIM_EXPIRES_AFTER),
        )
        .values(confirmation_mailing_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def release_claim(session: Session, subscriber_id: int, claimed_at: datetime) -> None:
    """Give the claim up (the send failed): the request is owed again at once."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.confirmation_mailing_at == claimed_at)
        .values(confirmation_mailing_at=None)
        .execution_options(synchronize_session=False)
    )


def mark_confirmation_mailed(session: Session, owed: OwedConfirmation, now: datetime) -> None:
    """Record that the SMTP server accepted the email owed for this request."""
    # Another machine's clock may run behind the web's: never record a mailing
    # earlier than the request it answers, or the sweeper would ring again.
    mailed_at = max(now, owed.requested_at)
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == owed.subscriber_id)
        .values(confirmation_mailed_at=mailed_at, confirmation_mailing_at=None)
        .execution_options(synchronize_session=False)
    )


def mail(rt: Runtime, owed: OwedConfirmation, now: datetime) -> Result:
    """Render the email and offer it to the SMTP server; the server's verdict.

    Raises outbox.NotSent (an OSError) when the relay cannot be reached at all.
    """
    return outbox.send_email(rt, render_confirmation(rt, owed.subscriber_id, owed.nonce), owed.address,
                             kind="confirmation", now=now,
                             bounce_ref=VerpRef(SUBSCRIBER, owed.subscriber_id))


def _note_key(owed: OwedConfirmation) -> str:
    return f"chapar:confirmation-mailed:{owed.subscriber_id}:{owed.requested_at.timestamp():.6f}"


def note_mailed(rt: Runtime, owed: OwedConfirmation) -> None:
    """Note in Redis that the SMTP server accepted the email owed for this request."""
    if rt.redis is None:
        return
    try:
        rt.redis.set(_note_key(owed), "1", ex=MAILED_NOTE_SECONDS)
    except RedisError as exc:  # the database records it as usual
        log.warning("could not note the confirmation for subscriber %s in Redis: %s",
                    owed.subscriber_id, exc)


def noted_mailed(rt: Runtime, owed: OwedConfirmation) -> bool:
    """Whether a sender noted this request's email as accepted (see MAILED_NOTE_SECONDS)."""
    if rt.redis is None:
        return False
    try:
        return bool(rt.redis.exists(_note_key(owed)))
    except RedisError as exc:
        log.warning("could not read the confirmation notes in Redis: %s", exc)
        return False


def mail_or_bounce(rt: Runtime, session: Session, owed: OwedConfirmation, now: datetime) -> bool:
    """Mail the email and record it; a permanent refusal of the mailbox marks it bounced.

    A 4xx refusal, a lost connection or an unreachable relay raises OSError, so the
    task retries it later. An email noted as accepted is recorded, not mailed again.
    """
    if noted_mailed(rt, owed):
        log.info("confirmation for subscriber %s was accepted before; recording it, not mailing it",
                 owed.subscriber_id)
        mark_confirmation_mailed(session, owed, now)
        return False
    result = mail(rt, owed, now)
    if result.recipient_refused:
        refusal = f"{result.code} {result.text}"
        # No retry and no sweep: asking again every minute for a day cannot help.
        log.info("confirmation for subscriber %s refused: %s", owed.subscriber_id, refusal)
        mark_bounced(session, owed.subscriber_id, now, f"confirmation refused: {refusal}")
        release_claim(session, owed.subscriber_id, now)
        return False
    if result.kind != "sent":
        raise outbox.NotSent(f"confirmation not accepted ({result.kind}): {result.code} {result.text}")
    note_mailed(rt, owed)
    mark_confirmation_mailed(session, owed, now)
    return True


def send_confirmation(rt: Runtime, subscriber_id: int, now: datetime) -> bool:
    """Mail the confirmation a pending subscriber is owed; True if mailed, and never twice.

    A redelivered or re-rung task finds the request already mailed and returns False.
    Raises ConfirmationBusy when the row stayed locked past LOCK_WAIT (nothing mailed).
    """
    try:
        with unit_of_work(rt.sessions) as session:
            hold_lock = not is_sqlite(session)
            owed = owed_confirmation(session, subscriber_id, lock=hold_lock)
            if owed is None:
                return False
            if hold_lock:
                return mail_or_bounce(rt, session, owed, now)
            # SQLite locks the whole database for a writing transaction; holding it across
            # an SMTP conversation would stall the web process. `chapar up` still runs two
            # pool processes and the sweeper re-rings every minute, so two of them can find
            # the same email owed: only the one whose claim lands, committed here, mails it.
            if not claim_confirmation(session, owed, now):
                return False
    except OperationalError as exc:
        # Not an outage: the database answered that someone else holds the row.
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise ConfirmationBusy(f"subscriber {subscriber_id} held past {LOCK_WAIT}") from exc
    try:
        with unit_of_work(rt.sessions) as session:
            # The session only opens its transaction when mail_or_bounce writes, after SMTP.
            return mail_or_bounce(rt, session, owed, now)
    except BaseException:
        with unit_of_work(rt.sessions) as session:
            release_claim(session, subscriber_id, now)
        raise


def owed_confirmation_ids(session: Session, now: datetime, *, older_than: timedelta = SWEEP_AFTER,
                          limit: int = SWEEP_BATCH) -> list[int]:
    """Pending subscribers whose confirmation was requested a while ago and never mailed.

    Requests older than a day are left alone: the reader may subscribe again, which
    owes a fresh email, and a day-old confirmation is more surprise than help.
    """
    requested = Subscriber.confirmation_requested_at
    mailed = Subscriber.confirmation_mailed_at
    query = (
        select(Subscriber.id)
        .where(
            Subscriber.status == Status.PENDING,
            requested.is_not(None),
            requested <= now - older_than,
            requested > now - CONFIRMATION_INTERVAL,
            or_(mailed.is_(None), mailed < requested),
        )
        .order_by(requested)
        .limit(limit)
    )
    return list(session.scalars(query))


def recently_rung(rt: Runtime, subscriber_id: int) -> bool:
    """Whether the sweeper rang for this subscriber within RERING_AFTER (Redis only)."""
    if rt.redis is None:
        return False  # the embedded setup: one worker, a few readers; ring every sweep
    first = rt.redis.set(f"chapar:confirmation-rung:{subscriber_id}", "1", nx=True,
                         ex=int(RERING_AFTER.total_seconds()))
    return not first


def sweep_confirmations(rt: Runtime, now: datetime) -> int:
    """Ring again for every confirmation that was owed but never mailed; how many rung."""
    with rt.sessions() as session:
        ids = owed_confirmation_ids(session, now)
    rung = 0
    for subscriber_id in ids:
        if not recently_rung(rt, subscriber_id):
            rt.ring(SEND_CONFIRMATION, subscriber_id)
            rung += 1
    return rung
