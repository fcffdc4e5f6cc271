"""Permissions and the roles that bundle them: the one place that says who may do what."""

from __future__ import annotations

import enum


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
