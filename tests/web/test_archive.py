"""/archive lists what went out; /archive/N shows it without anyone's personal links."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from service.db import unit_of_work
from service.digests.build import build_issue
from service.digests.models import IssueStatus
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL
from service.runtime import Runtime
from service.web.app import create_app
from tests.digests.factories import article

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def make_issues(rt: Runtime) -> None:
    """Issue 1 sent, issue 2 still a draft."""
    with unit_of_work(rt.sessions) as session:
        article(session, NOW - timedelta(days=8), title="خبر شمارهٔ یک")
        first = build_issue(session, rt.settings, NOW - timedelta(days=7)).issue
        assert first is not None
        first.status = IssueStatus.SENT
        first.send_started_at = NOW - timedelta(days=7)
        article(session, NOW - timedelta(days=1), title="خبر پیش‌نویس")
        assert build_issue(session, rt.settings, NOW).issue is not None


def test_archive_lists_sent_issues_only(client: TestClient, runtime: Runtime) -> None:
    make_issues(runtime)
    response = client.get("/archive")
    assert response.status_code == 200
    assert '<html lang="fa" dir="rtl">' in response.text
    assert "http://chapar.test/archive/1" in response.text
    assert "خبر شمارهٔ یک" in response.text
    assert "/archive/2" not in response.text and "پیش‌نویس" not in response.text


def test_an_issue_page_is_the_email_without_personal_links(client: TestClient, runtime: Runtime) -> None:
    make_issues(runtime)
    response = client.get("/archive/1")
    assert response.status_code == 200
    page = response.text
    assert 'dir="rtl"' in page and 'lang="fa"' in page
    assert "خبر شمارهٔ یک" in page
    assert UNSUBSCRIBE_URL not in page and PREFERENCES_URL not in page
    assert "%%CHAPAR" not in page and "لغو عضویت" not in page
    assert 'href="http://chapar.test/"' in page  # subscribe instead


def test_drafts_and_unknown_numbers_are_not_found(client: TestClient, runtime: Runtime) -> None:
    make_issues(runtime)
    assert client.get("/archive/2").status_code == 404
    assert client.get("/archive/99").status_code == 404
    assert client.get("/archive/x").status_code in (404, 422)


@pytest.mark.parametrize("number", ["0", "2147483648", "9223372036854775808", "1" + "0" * 40])
def test_a_number_past_any_issue_is_not_found(client: TestClient, runtime: Runtime,
                                              number: str, caplog: pytest.LogCaptureFixture) -> None:
    make_issues(runtime)
    with caplog.at_level(logging.WARNING):
        response = client.get(f"/archive/{number}")
    assert response.status_code == 404 and 'dir="rtl"' in response.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
