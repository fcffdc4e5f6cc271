"""Staff accounts for tests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.clock import utcnow
from service.staff import accounts
from service.staff.audit import CLI
from service.staff.models import StaffAccount

PASSWORD = "correct horse battery staple"


def staff_account(session: Session, email: str = "editor@example.com", role: str = "editor",
                  now: datetime | None = None, password: str = PASSWORD) -> StaffAccount:
    return accounts.create(session, CLI, email, role, password, now or utcnow(), name=role.title())
