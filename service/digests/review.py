"""The issue's review states: what an edit does to an issue on its way to readers.

Only `note_edit` lives here for now; the review workflow (request review, approve,
send back, schedule) replaces this module with the full one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.digests.models import Issue
from service.staff import audit
from service.staff.audit import Actor


def note_edit(session: Session, issue: Issue, actor: Actor, now: datetime) -> None:
    """Record that the issue's content changed (an approved issue would go back to draft)."""
    audit.record(session, actor, "issue.edit", f"issue {issue.number}", now)
