"""Invitations: a signed, expiring set-password link, mailed to the new staff member.

The link carries the account id and a fingerprint of its current password hash, so it
stops working the moment a password is set: it opens the door once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from service.delivery import outbox
from service.mail.render import RenderedEmail
from service.persian import single_line
from service.runtime import Runtime
from service.staff.models import StaffAccount
from service.staff.permissions import ROLE_LABELS

SALT = "chapar.staff-invite"


class InviteError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" | "expired" | "used"


def _fingerprint(account: StaffAccount) -> str:
    return hashlib.sha256((account.password_hash or "").encode("utf-8")).hexdigest()[:16]


def _serializer(rt: Runtime) -> URLSafeTimedSerializer:
    # Every key the tokens accept (the newest signs), so a rotation leaves open invitations valid.
    return URLSafeTimedSerializer(list(rt.tokens.secret_keys), salt=SALT)


def make_token(rt: Runtime, account: StaffAccount) -> str:
    return _serializer(rt).dumps([account.id, _fingerprint(account)])


def read_token(rt: Runtime, session: Session, token: str) -> StaffAccount:
    """The account a set-password link opens; InviteError if forged, expired or used."""
    try:
        value = _serializer(rt).loads(token, max_age=rt.settings.staff_invite_max_age_hours * 3600)
    except SignatureExpired as exc:
        raise InviteError("expired") from exc
    except BadSignature as exc:
        raise InviteError("invalid") from exc
    if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int):
        raise InviteError("invalid")
    account = session.get(StaffAccount, value[0])
    if account is None or not account.active:
        raise InviteError("invalid")
    if value[1] != _fingerprint(account):
        raise InviteError("used")
    return account


def invite_link(rt: Runtime, account: StaffAccount) -> str:
    return rt.url(f"/desk/welcome/{make_token(rt, account)}")


def render_invite(rt: Runtime, account: StaffAccount, inviter: str) -> RenderedEmail:
    context: dict[str, object] = {
        "list_name": rt.settings.list_name,
        "inviter": inviter,
        "role_label": ROLE_LABELS.get(account.role, account.role),
        "link": invite_link(rt, account),
        "expires_hours": rt.settings.staff_invite_max_age_hours,
        "login_url": rt.url("/desk/login"),
    }
    subject = rt.email_templates.env.get_template("staff-invite/subject.txt").render(context)
    context["subject"] = single_line(subject)
    return rt.email_templates.render("staff-invite", context)


def send_staff_email(rt: Runtime, rendered: RenderedEmail, to: str, now: datetime) -> None:
    """Hand one staff email to the SMTP server; raises OSError if it did not take it.

    It leaves by the path every email takes (service/delivery/outbox.py): DKIM, HELO,
    TLS policy and a return path in the bounce domain. Call it after the transaction
    that wrote the account has committed: the outbox records the sending health in a
    transaction of its own.
    """
    result = outbox.send_email(rt, rendered, to, kind="invitation", now=now)
    if result.kind != "sent":
        raise outbox.NotSent(f"invitation to {to} not accepted: {result.code} {result.text}")
