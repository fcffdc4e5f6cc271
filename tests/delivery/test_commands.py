"""`chapar digest send|pause|resume|cancel|retry-failed N` change the ledger as promised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from service.cli import main
from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Delivery, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime
from tests.conftest import make_settings, truncate_all
from tests.delivery.factories import add_subscribers, make_issue
from tests.support.processes import settings_env
from tests.support.smtp import SmtpRecorder


@pytest.fixture
def embedded(sqlite_url: str, tmp_path: Path, smtp: SmtpRecorder) -> Iterator[Runtime]:
    # A relay that answers: `digest send` checks it before the send starts.
    rt = Runtime.from_settings(make_settings(tmp_path, database_url=sqlite_url, smtp_url=smtp.url))
    truncate_all(rt)
    yield rt
    truncate_all(rt)
    rt.close()


def chapar(rt: Runtime, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=settings_env(rt.settings))


def state(rt: Runtime) -> tuple[IssueStatus, dict[str, int]]:
    with rt.sessions() as session:
        issue = session.scalars(select(Issue)).one()
        return issue.status, ledger.counts(session, issue.id)


def test_send_pause_resume_cancel_and_retry_failed(embedded: Runtime) -> None:
    rt = embedded
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 6)
        make_issue(session, number=12)

    result = chapar(rt, "digest", "send", "12")
    assert result.exit_code == 0, result.output
    assert "6 deliveries queued" in result.output
    assert state(rt)[0] is IssueStatus.SENDING and state(rt)[1]["queued"] == 6
    again = chapar(rt, "digest", "send", "12")
    assert again.exit_code != 0 and state(rt)[1]["queued"] == 6  # nothing twice

    assert chapar(rt, "digest", "pause", "12").exit_code == 0
    assert state(rt)[0] is IssueStatus.PAUSED
    assert chapar(rt, "digest", "pause", "12").exit_code != 0  # not sending any more
    assert chapar(rt, "digest", "resume", "12").exit_code == 0
    assert state(rt)[0] is IssueStatus.SENDING

    # Pretend the workers sent four, failed one and one is still queued; then cancel.
    with unit_of_work(rt.sessions) as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
        session.execute(update(Delivery).where(Delivery.id.in_(ids[:4])).values(status=DeliveryStatus.SENT))
        session.execute(update(Delivery).where(Delivery.id == ids[4]).values(status=DeliveryStatus.FAILED))
    result = chapar(rt, "digest", "cancel", "12")
    assert result.exit_code == 0 and "1 rows cancelled" in result.output
    status, counts = state(rt)
    assert status is IssueStatus.CANCELLED
    assert (counts["sent"], counts["failed"], counts["cancelled"]) == (4, 1, 1)
    assert chapar(rt, "digest", "retry-failed", "12").exit_code != 0  # a cancelled issue stays so


def test_retry_failed_queues_only_the_failed_rows_again(embedded: Runtime) -> None:
    rt = embedded
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 3)
        make_issue(session, number=2)
    assert chapar(rt, "digest", "send", "2").exit_code == 0
    with unit_of_work(rt.sessions) as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
        session.execute(update(Delivery).where(Delivery.id.in_(ids[:2])).values(status=DeliveryStatus.SENT))
        session.execute(update(Delivery).where(Delivery.id == ids[2]).values(status=DeliveryStatus.FAILED))
        issue = session.scalars(select(Issue)).one()
        assert ledger.finish_if_done(session, issue.id, issue.created_at)
    assert state(rt)[0] is IssueStatus.SENT
    result = chapar(rt, "digest", "retry-failed", "2")
    assert result.exit_code == 0 and "1 rows queued again" in result.output
    status, counts = state(rt)
    assert status is IssueStatus.SENDING and counts["queued"] == 1 and counts["sent"] == 2


def test_unknown_issue_number_is_a_clear_error(embedded: Runtime) -> None:
    result = chapar(embedded, "digest", "send", "77")
    assert result.exit_code != 0 and "no issue number 77" in result.output
