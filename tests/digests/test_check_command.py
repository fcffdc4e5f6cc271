"""`chapar digest check N` and the checks at `chapar digest send N`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.db import unit_of_work
from service.delivery.models import Delivery
from service.digests import checks
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime
from service.staff.audit import Actor
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_commands import chapar
from tests.support.smtp import SmtpRecorder


@pytest.fixture
def embedded(sqlite_url: str, tmp_path: Path, smtp: SmtpRecorder) -> Iterator[Runtime]:
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, smtp_url=smtp.url,
                                             public_url="https://chapar.example.com"))
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def test_check_prints_the_report_and_exits_zero_without_blockers(embedded: Runtime) -> None:
    with unit_of_work(embedded.sessions) as session:
        make_issue(session, number=3)
    result = chapar(embedded, "digest", "check", "3", "--stored-links")
    assert result.exit_code == 0, result.output
    # The report is stdout; log lines (an SMTP server thread's, say) go to stderr, which
    # Click 8.2's `output` interleaves.
    assert result.stdout.startswith("issue 3: passed; HTML ")
    report = json.loads(chapar(embedded, "digest", "check", "3", "--json", "--stored-links").stdout)
    assert report["blocked"] is False and report["issue_number"] == 3
    assert report["clip"]["cut_at"] is None and report["clip"]["html_bytes"] > 10_000


def test_check_exits_non_zero_on_a_blocker_with_the_reason_in_persian(embedded: Runtime) -> None:
    with unit_of_work(embedded.sessions) as session:
        make_issue(session, number=4).subject = ""
    result = chapar(embedded, "digest", "check", "4", "--stored-links")
    assert result.exit_code == 1
    assert "[blocker] subject.missing: موضوع نامه خالی است | the subject is empty" in result.output
    assert json.loads(chapar(embedded, "digest", "check", "4", "--json",
                             "--stored-links").stdout)["blocked"] is True
    assert chapar(embedded, "digest", "check", "99").exit_code == 1


def test_send_refuses_a_blocked_issue_until_an_admin_overrides(embedded: Runtime) -> None:
    with unit_of_work(embedded.sessions) as session:
        add_subscribers(session, 3)
        issue = make_issue(session, number=5)
        issue.html = issue.html.replace("شماره 5", "شماره {{ number }}")
    refused = chapar(embedded, "digest", "send", "5")
    assert refused.exit_code != 0
    assert "ارسال متوقف شد: نشانهٔ قالب پر نشده" in refused.output
    assert "send blocked by the checks: unresolved template syntax" in refused.output
    with embedded.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalars(select(Issue.status)).one() is IssueStatus.DRAFT
    with unit_of_work(embedded.sessions) as session:
        issue = session.scalars(select(Issue)).one()
        report = checks.run_checks(embedded, session, issue, issue.created_at, fetch_links=False)
        checks.override(session, issue, report, Actor(None, "admin@example.com", "cli"),
                        issue.created_at)
    sent = chapar(embedded, "digest", "send", "5")
    assert sent.exit_code == 0, sent.output
    assert "3 deliveries queued" in sent.output
