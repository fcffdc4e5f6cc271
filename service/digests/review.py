"""An issue's states and who may move it: draft -> in review -> approved -> scheduled -> sending.

An editor prepares a draft and asks for review; a chief editor approves it or sends it
back with a comment; the approved issue goes at its weekly slot, at a chosen time, or
now. Any edit after the request returns the issue to draft (`note_edit`). The pre-send
checks run when review is requested and again when the send starts; a blocker stops
both unless an admin overrides it, and the override is audited. Every move is audited
with the issue as its target, which is also the issue's review history.

The desk, the command line and the beat all call these functions: there is no second
path. They take a Session and never commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import ledger
from service.digests.models import Issue, IssueStatus
from service.digests.weekly import current, next_slot
from service.persian import normalize_text
from service.runtime import Runtime
from service.settings import Settings
from service.staff import audit
from service.staff.audit import Actor
from service.staff.models import AuditEntry
from service.staff.permissions import Permission, Who

log = logging.getLogger(__name__)
S = IssueStatus

LABELS = {
    S.DRAFT: "پیش‌نویس",
    S.IN_REVIEW: "در انتظار بازبینی",
    S.APPROVED: "تأییدشده",
    S.SCHEDULED: "زمان‌بندی‌شده",
    S.SENDING: "در حال ارسال",
    S.PAUSED: "متوقف",
    S.CANCELLED: "لغوشده",
    S.SENT: "ارسال‌شده",
}
# After the send starts an issue is the ledger's: nothing here moves it any more.
UNSENT = (S.DRAFT, S.IN_REVIEW, S.APPROVED, S.SCHEDULED)
SENDABLE = (S.APPROVED, S.SCHEDULED)
COMMENT_MAX = 2000

# The pre-send checks as the states need them: the blockers of one issue, each one line
# "Persian | English", and none when the issue may go.
Checker = Callable[[Session, Issue], list[str]]


class ReviewError(ValueError):
    """A move the issue's state or the rules do not allow; str() is Persian | English."""

    def __init__(self, persian: str, english: str) -> None:
        super().__init__(f"{persian} | {english}")
        self.persian = persian


class Blocked(ReviewError):
    """The pre-send checks found blockers; `lines` names each one."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("بررسی پیش از ارسال مانع دارد: " + "؛ ".join(persian_of(line) for line in lines),
                         "the pre-send checks found blockers: "
                         + "; ".join(line.partition(" | ")[2] or line for line in lines))
        self.lines = lines


def persian_of(line: str) -> str:
    return line.partition(" | ")[0]


def target(issue: Issue) -> str:
    return Issue.audit_target_of(issue.number)


def find(session: Session, number: int) -> Issue:
    issue = session.scalars(select(Issue).where(Issue.number == number)).one_or_none()
    if issue is None:
        raise ReviewError(f"شماره‌ای با عدد {number} نیست.", f"there is no issue {number}")
    return issue


def _require_state(issue: Issue, allowed: tuple[IssueStatus, ...], doing: str) -> None:
    if issue.status not in allowed:
        raise ReviewError(
            f"این کار در وضعیت «{LABELS[issue.status]}» ممکن نیست.",
            f"cannot {doing} issue {issue.number}: it is {issue.status.value}")


def _move(session: Session, issue: Issue, to: IssueStatus, actor: Actor, action: str, now: datetime,
          detail: str = "") -> None:
    before = issue.status
    issue.status = to
    if to is not S.SCHEDULED:
        issue.scheduled_for = None
    session.flush()
    audit.record(session, actor, action, target(issue), now,
                 f"{before.value} -> {to.value}" + (f": {detail}" if detail else ""))


def _run_checks(session: Session, issue: Issue, who: Who, now: datetime, checks: Checker,
                override: bool) -> None:
    """Refuse on blockers, unless an admin overrides them (audited).

    With the real checks (PreSendChecks) the override is stored by service/digests/checks.py
    for exactly this version of the issue, so the checks run again at the send let it go
    too; any later edit needs a new one.
    """
    lines = checks(session, issue)
    if not lines:
        return
    if not override:
        raise Blocked(lines)
    if who.role != "admin":
        raise ReviewError("فقط مدیر می‌تواند از مانع بررسی پیش از ارسال بگذرد.",
                          "only an admin may override a blocker of the pre-send checks")
    if not (isinstance(checks, PreSendChecks) and checks.record_override(session, issue, who.actor, now)):
        audit.record(session, who.actor, "issue.checks_override", target(issue), now, "\n".join(lines))


def request_review(session: Session, issue: Issue, who: Who, now: datetime, checks: Checker, *,
                   override: bool = False) -> None:
    """draft -> in review, once the checks find no blocker."""
    who.require(Permission.ISSUES_PREPARE)
    _require_state(issue, (S.DRAFT,), "request review of")
    _run_checks(session, issue, who, now, checks, override)
    _move(session, issue, S.IN_REVIEW, who.actor, "issue.request_review", now)


def approve(session: Session, issue: Issue, who: Who, now: datetime) -> None:
    """in review -> approved: it goes at the next weekly slot unless scheduled or sent now."""
    who.require(Permission.ISSUES_APPROVE)
    _require_state(issue, (S.IN_REVIEW,), "approve")
    _move(session, issue, S.APPROVED, who.actor, "issue.approve", now)


def send_back(session: Session, issue: Issue, who: Who, now: datetime, comment: str) -> None:
    """in review, approved or scheduled -> draft, with the chief editor's comment."""
    who.require(Permission.ISSUES_APPROVE)
    _require_state(issue, (S.IN_REVIEW, S.APPROVED, S.SCHEDULED), "send back")
    text = normalize_text(comment).replace("\r\n", "\n").strip()
    if not text:
        raise ReviewError("برای برگرداندن، توضیح بنویسید.", "sending back needs a comment")
    _move(session, issue, S.DRAFT, who.actor, "issue.send_back", now, text[:COMMENT_MAX])


def schedule(session: Session, settings: Settings, issue: Issue, who: Who, now: datetime,
             at: datetime | None = None) -> datetime:
    """approved (or scheduled) -> scheduled at `at`, or at the next weekly slot; returns when."""
    who.require(Permission.ISSUES_APPROVE)
    _require_state(issue, SENDABLE, "schedule")
    when = at if at is not None else next_slot(current(session, settings), now)
    if when.tzinfo is None:
        raise ReviewError("زمان باید منطقهٔ زمانی داشته باشد.", "the time needs a zone")
    if when <= now:
        raise ReviewError("زمان ارسال باید در آینده باشد.", "the send time must be in the future")
    _move(session, issue, S.SCHEDULED, who.actor, "issue.schedule", now, when.isoformat())
    issue.scheduled_for = when
    session.flush()
    return when


def unschedule(session: Session, issue: Issue, actor: Actor, now: datetime, why: str) -> None:
    """scheduled -> approved: its time was missed or its checks failed; it waits for a person."""
    _require_state(issue, (S.SCHEDULED,), "unschedule")
    _move(session, issue, S.APPROVED, actor, "issue.unschedule", now, why)


def start_send(session: Session, issue: Issue, actor: Actor, now: datetime, retry_for: timedelta,
               checks: Checker, *, who: Who | None = None, override: bool = False) -> int:
    """The one send start of an approved or scheduled issue: checks, then the ledger's fan-out.

    Returns the ledger rows written; the caller rings the workers after committing.
    """
    _run_checks(session, issue, who or Who(actor, ""), now, checks, override)
    before = issue.status
    rows = ledger.start_send(session, issue.id, now, retry_for)
    if rows is None:
        raise ReviewError("ارسال این شماره پیش‌تر آغاز شده است.",
                          f"issue {issue.number} has already started sending")
    if rows == 0:  # nobody to send to: the issue is finished at once
        ledger.finish_if_done(session, issue.id, now)
    session.refresh(issue)
    audit.record(session, actor, "issue.send", target(issue), now,
                 f"{before.value} -> sending: {rows} deliveries")
    return rows


def send_now(session: Session, issue: Issue, who: Who, now: datetime, retry_for: timedelta,
             checks: Checker, *, override: bool = False) -> int:
    """approved or scheduled -> sending, now; returns the ledger rows written."""
    who.require(Permission.ISSUES_SEND)
    _require_state(issue, SENDABLE, "send")
    return start_send(session, issue, who.actor, now, retry_for, checks, who=who, override=override)


def note_edit(session: Session, issue: Issue, actor: Actor, now: datetime, detail: str = "",
              action: str = "issue.edit") -> None:
    """Record an edit of an issue's content; an issue under review or approved returns to draft.

    Called after every change the desk or the CLI makes to an issue's content; `action`
    names the change in the audit log (issue.move, issue.lead, ...).
    """
    _require_state(issue, UNSENT, "edit")
    if issue.status is not S.DRAFT:
        _move(session, issue, S.DRAFT, actor, "issue.back_to_draft", now, "edited")
    audit.record(session, actor, action, target(issue), now, detail)


def history(session: Session, issue: Issue) -> list[AuditEntry]:
    """The issue's audited moves and edits, oldest first (comments are in `detail`)."""
    return list(session.scalars(select(AuditEntry).where(AuditEntry.target == target(issue))
                                .order_by(AuditEntry.id)))


def actions_for(issue: Issue, who: Who) -> list[str]:
    """The moves this person may make on this issue now, in the desk's order."""
    possible = {
        "request": S.DRAFT, "approve": S.IN_REVIEW,
    }
    found = [name for name, state in possible.items() if issue.status is state]
    if issue.status in (S.IN_REVIEW, S.APPROVED, S.SCHEDULED):
        found.append("send-back")
    if issue.status in SENDABLE:
        found += ["schedule", "send-now"]
    needs = {"request": Permission.ISSUES_PREPARE, "approve": Permission.ISSUES_APPROVE,
             "send-back": Permission.ISSUES_APPROVE, "schedule": Permission.ISSUES_APPROVE,
             "send-now": Permission.ISSUES_SEND}
    return [name for name in found if who.may(needs[name])]


@dataclass(frozen=True)
class PreSendChecks:
    """The pre-send checks of service/digests/checks.py, bound to a runtime (a Checker)."""

    rt: Runtime

    def __call__(self, session: Session, issue: Issue) -> list[str]:
        return run_checks_hook(self.rt, session, issue)

    def record_override(self, session: Session, issue: Issue, actor: Actor, now: datetime) -> bool:
        """Store an admin's override of the blockers found now (the checks audit it);
        False when the checks themselves found none to store."""
        from service.digests import checks

        report = checks.run_checks(self.rt, session, issue, now, fetch_links=False)
        if not checks.blockers(report):
            return False
        checks.override(session, issue, report, actor, now, "overridden at review or send")
        return True


def pre_send_checks(rt: Runtime) -> Checker:
    return PreSendChecks(rt)


def checks_module_blockers(rt: Runtime, session: Session, issue: Issue) -> list[str]:
    """Run service.digests.checks on the issue: its blockers no admin overrode, one line each.

    The send path fetches no links (a broken link is only a warning, and a fetch must
    not hold the transaction open); the answers a worker stored are used.
    """
    from service.digests import checks

    report = checks.run_checks(rt, session, issue, utcnow(), fetch_links=False)
    if not report.blocked:
        return []
    return [f"{item.fa} | {item.en}" for item in checks.blockers(report)]


# The seam through which every check runs; tests put a stand-in report here.
run_checks_hook: Callable[[Runtime, Session, Issue], list[str]] = checks_module_blockers


def send_now_and_ring(rt: Runtime, number: int, who: Who, now: datetime, *,
                      override: bool = False) -> int:
    """Check that sending works, start issue `number`'s send, commit, then ring the workers."""
    from service.delivery.control import ring_fanned_out
    from service.delivery.preflight import SendRefused, check_before_send

    who.require(Permission.ISSUES_SEND)
    try:
        check_before_send(rt, now)
    except SendRefused as exc:
        raise ReviewError(str(exc).partition(" | ")[0], str(exc).partition(" | ")[2]) from exc
    with unit_of_work(rt.sessions) as session:
        issue = find(session, number)
        rows = send_now(session, issue, who, now, timedelta(hours=rt.settings.retry_for_hours),
                        pre_send_checks(rt), override=override)
        issue_id = issue.id
    if rows:
        ring_fanned_out(rt, issue_id, rows)
    return rows
