"""What staff may do to one reader, from the desk or the CLI; each change is audited.

Unsubscribe, resend the confirmation and erase call the very store functions the
reader's own links call (store.unsubscribe, store.claim_confirmation, store.erase),
so a reader handled by staff ends in the same state as one who acted alone: an
erased address leaves only its keyed hash, which no import brings back. The audit
log names the reader by id, never by address, so an erasure leaves no address there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.runtime import Runtime
from service.staff import audit
from service.staff.audit import Actor
from service.subscribers import store
from service.subscribers.addresses import AddressError, normalize_address
from service.subscribers.emails import SEND_CONFIRMATION
from service.subscribers.models import Status, Subscriber
from service.subscribers.search import ReaderFilter

log = logging.getLogger(__name__)


class ActionRefused(Exception):
    """The action does not apply to this reader now; `reason` names why (see REASONS)."""

    def __init__(self, reason: str, until: datetime | None = None) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason
        self.until = until  # too-soon: when a confirmation may be asked for again


REASONS = {
    "missing": "there is no such reader (erased, or never subscribed)",
    "not-pending": "only a reader whose subscription waits for confirmation gets a confirmation email",
    "too-soon": "a confirmation email was already asked for this address within the last day",
    "unchanged": "the reader has already left the list (unsubscribed, bounced or complained)",
}


@dataclass(frozen=True)
class Done:
    subscriber_id: int
    status: Status | None  # None: erased


def target(subscriber_id: int) -> str:
    """How the audit log names a reader: by id, so an erased address stays erased."""
    return f"subscriber:{subscriber_id}"


def event_source(actor: Actor) -> str:
    """What the reader's own history says did it: staff, and who."""
    return f"staff:{actor.label}"[:200]


def find_id(rt: Runtime, address: str) -> int:
    """The id of the reader with this address (in any form that normalises to it)."""
    try:
        email = normalize_address(address, allow_smtputf8=rt.settings.smtputf8)
    except AddressError:
        email = address.strip().lower()
    with rt.sessions() as session:
        found = store.find_by_email(session, email)
        if found is None:
            raise ActionRefused("missing")
        return found.id


def _reader(session: Session, subscriber_id: int) -> Subscriber:
    found = session.get(Subscriber, subscriber_id, with_for_update=True)
    if found is None:
        raise ActionRefused("missing")
    return found


def unsubscribe(rt: Runtime, actor: Actor, subscriber_id: int, now: datetime) -> Done:
    """Take a pending or confirmed reader off the list, as their unsubscribe link would."""
    with unit_of_work(rt.sessions) as session:
        before = _reader(session, subscriber_id).status
        if before not in (Status.PENDING, Status.CONFIRMED):
            raise ActionRefused("unchanged")
        store.unsubscribe(session, subscriber_id, now, event_source(actor))
        audit.record(session, actor, "subscriber.unsubscribe", target(subscriber_id), now,
                     f"was {before.value}")
    return Done(subscriber_id, Status.UNSUBSCRIBED)


def resend_confirmation(rt: Runtime, actor: Actor, subscriber_id: int, now: datetime) -> Done:
    """Owe a pending reader a fresh confirmation email, under the readers' own rule:
    at most one per address per day (CONFIRM_EMAILS_PER_ADDRESS_PER_DAY).

    The email itself is sent by the worker that sends every confirmation, rung after
    the commit; if the ring is lost, the confirmation sweeper rings again.
    """
    interval = store.confirmation_interval(rt.settings.confirm_emails_per_address_per_day)
    with unit_of_work(rt.sessions) as session:
        reader = _reader(session, subscriber_id)
        if reader.status is not Status.PENDING:
            raise ActionRefused("not-pending")
        requested = reader.confirmation_requested_at
        if not store.claim_confirmation(session, subscriber_id, now, interval=interval):
            raise ActionRefused("too-soon", until=requested + interval if requested else None)
        audit.record(session, actor, "subscriber.resend_confirmation", target(subscriber_id), now)
    try:
        rt.ring(SEND_CONFIRMATION, subscriber_id)
    except Exception:
        log.exception("could not enqueue confirmation for subscriber %s", subscriber_id)
    return Done(subscriber_id, Status.PENDING)


def erase(rt: Runtime, actor: Actor, subscriber_id: int, now: datetime) -> Done:
    """Erase the reader exactly as their own erase link does: the row, history and consent
    go, a keyed hash stays so no import or unconfirmed subscribe brings them back."""
    with unit_of_work(rt.sessions) as session:
        if not store.erase(session, subscriber_id, now):
            raise ActionRefused("missing")
        audit.record(session, actor, "subscriber.erase", target(subscriber_id), now)
    return Done(subscriber_id, None)


def record_export(rt: Runtime, actor: Actor, f: ReaderFilter, now: datetime) -> None:
    """Audit an export of the list before its first line leaves: who, and which readers."""
    with unit_of_work(rt.sessions) as session:
        audit.record(session, actor, "subscribers.export", "subscribers", now, f.describe())
