"""Telling the editors that an issue was held at its time instead of sent."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.delivery import outbox
from service.persian import jalali_datetime
from service.runtime import Runtime
from service.staff.models import StaffAccount
from service.staff.permissions import Permission, allows

log = logging.getLogger(__name__)


def editors(session: Session) -> list[str]:
    """The addresses of everyone active who may prepare an issue (editors, chief editors, admins)."""
    people = session.scalars(select(StaffAccount).where(StaffAccount.disabled_at.is_(None),
                                                        StaffAccount.password_hash.is_not(None))
                             .order_by(StaffAccount.id))
    return [p.email for p in people if allows(p.role, Permission.ISSUES_PREPARE)]


def tell_editors(rt: Runtime, number: int, due_at: datetime, reason: str, now: datetime) -> int:
    """Email every editor that issue `number` was held; returns how many took the message.

    Called after the tick's commit. A message the relay does not take is logged and
    not retried: the issue list on the desk shows the held issue all the same.
    """
    with rt.sessions() as session:
        addresses = editors(session)
    context = {"list_name": rt.settings.list_name, "number": number,
               "due": jalali_datetime(due_at, rt.settings.tz), "reason": reason.partition(" | ")[0],
               "link": rt.url(f"/desk/issues/{number}")}
    subject = rt.email_templates.env.get_template("issue-held/subject.txt").render(context)
    email = rt.email_templates.render("issue-held", {**context, "subject": subject})
    taken = 0
    for address in addresses:
        try:
            result = outbox.send_email(rt, email, address, kind="held", now=now)
        except OSError as exc:
            log.warning("could not tell %s that issue %s was held: %s", address, number, exc)
            continue
        taken += result.kind == "sent"
    return taken
