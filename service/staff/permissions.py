"""Permissions and the roles that bundle them: the one place that says who may do what."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from service.staff.audit import CLI, Actor


class Permission(enum.StrEnum):
    ISSUES_PREPARE = "issues.prepare"
    ISSUES_APPROVE = "issues.approve"
    ISSUES_SEND = "issues.send"
    SUBSCRIBERS_VIEW = "subscribers.view"
    SUBSCRIBERS_MANAGE = "subscribers.manage"
    STATS_VIEW = "stats.view"
    OPS_VIEW = "ops.view"
    OPS_ACT = "ops.act"
    STAFF_MANAGE = "staff.manage"


P = Permission
ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "chief-editor": frozenset({P.ISSUES_PREPARE, P.ISSUES_APPROVE, P.ISSUES_SEND,
                               P.SUBSCRIBERS_VIEW, P.STATS_VIEW}),
    "editor": frozenset({P.ISSUES_PREPARE, P.SUBSCRIBERS_VIEW, P.STATS_VIEW}),
    "ops": frozenset({P.OPS_VIEW, P.OPS_ACT, P.STATS_VIEW}),
    "viewer": frozenset(),  # read-only pages any signed-in person may open
}

ROLE_LABELS = {
    "admin": "مدیر",
    "chief-editor": "سردبیر",
    "editor": "ویراستار",
    "ops": "عملیات",
    "viewer": "بیننده",
}


class UnknownRole(ValueError):
    def __init__(self, role: str) -> None:
        super().__init__(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UnknownRole(role)
    return role


def allows(role: str, permission: Permission) -> bool:
    """Whether a role has a permission; an unknown role has none."""
    return permission in ROLES.get(role, frozenset())


class NotPermitted(PermissionError):
    """The role lacks the permission; str() is Persian | English."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(f"نقش شما اجازهٔ این کار را نمی‌دهد | this needs the permission {permission}")
        self.permission = permission


@dataclass(frozen=True)
class Who:
    """Someone acting on the domain: the actor the audit log names, and their role.

    The command line acts as an admin: whoever runs it already holds the database.
    """

    actor: Actor
    role: str

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def require(self, permission: Permission) -> None:
        if not self.may(permission):
            raise NotPermitted(permission)


COMMAND_LINE = Who(CLI, "admin")
