"""Every desk route, for every role and for nobody signed in: the status a person gets.

The expected access is written out here, separately from the table the app uses, and
the routes are read from the app: a new route without an entry here fails the test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.clock import utcnow
from service.db import unit_of_work
from service.digests import review
from service.digests.build import build_issue
from service.runtime import Runtime
from service.staff import accounts, invites, sessions
from service.staff.audit import CLI
from service.staff.permissions import ROLES
from service.subscribers import imports, store
from service.subscribers.models import Status
from service.web.app import create_app
from tests.digests.factories import article
from tests.staff.factories import staff_account
from tests.web.desk.support import csrf_from, desk_client, desk_routes, sign_in

EVERYONE = set(ROLES)
STAFF_MANAGERS = {"admin"}
PREPARERS = {"admin", "chief-editor", "editor"}
APPROVERS = {"admin", "chief-editor"}
SENDERS = {"admin", "chief-editor"}
OPS = {"admin", "ops"}
STATS = {"admin", "chief-editor", "editor", "ops"}
READERS = {"admin", "chief-editor", "editor"}  # subscribers.view
READER_MANAGERS = {"admin"}  # subscribers.manage
EXPECTED: dict[tuple[str, str], set[str] | None] = {  # None: public
    ("GET", "/desk/login"): None,
    ("POST", "/desk/login"): None,
    ("GET", "/desk/welcome/{token}"): None,
    ("POST", "/desk/welcome/{token}"): None,
    ("POST", "/desk/logout"): EVERYONE,
    ("GET", "/desk/"): EVERYONE,
    ("POST", "/desk/sessions/{session_id}/revoke"): EVERYONE,
    ("GET", "/desk/account/totp"): EVERYONE,
    ("POST", "/desk/account/totp"): EVERYONE,
    ("GET", "/desk/api"): EVERYONE,
    ("GET", "/desk/staff"): STAFF_MANAGERS,
    ("POST", "/desk/staff/invite"): STAFF_MANAGERS,
    ("POST", "/desk/staff/{account_id}/role"): STAFF_MANAGERS,
    ("POST", "/desk/staff/{account_id}/disable"): STAFF_MANAGERS,
    ("POST", "/desk/staff/{account_id}/enable"): STAFF_MANAGERS,
    ("GET", "/desk/audit"): STAFF_MANAGERS,
    ("GET", "/desk/issues"): EVERYONE,
    ("GET", "/desk/issues/{number}/review"): EVERYONE,
    ("POST", "/desk/issues/{number}/review/request"): PREPARERS,
    ("POST", "/desk/issues/{number}/review/approve"): APPROVERS,
    ("POST", "/desk/issues/{number}/review/send-back"): APPROVERS,
    ("POST", "/desk/issues/{number}/review/schedule"): APPROVERS,
    ("POST", "/desk/issues/{number}/review/send-now"): SENDERS,
    ("GET", "/desk/schedule"): EVERYONE,
    ("POST", "/desk/schedule"): STAFF_MANAGERS,
    ("POST", "/desk/schedule/skip"): PREPARERS,
    ("POST", "/desk/schedule/unskip"): PREPARERS,
    ("GET", "/desk/issues/{number}"): EVERYONE,
    ("POST", "/desk/issues/{number}/articles/{item_id}/move"): PREPARERS,
    ("POST", "/desk/issues/{number}/articles/{item_id}/exclude"): PREPARERS,
    ("POST", "/desk/issues/{number}/articles/{item_id}/pin"): PREPARERS,
    ("POST", "/desk/issues/{number}/lead"): PREPARERS,
    ("POST", "/desk/issues/{number}/grouping"): PREPARERS,
    ("POST", "/desk/issues/{number}/text"): PREPARERS,
    ("POST", "/desk/issues/{number}/rebuild"): PREPARERS,
    ("POST", "/desk/issues/{number}/add"): PREPARERS,
    ("GET", "/desk/issues/{number}/preview"): PREPARERS,
    ("GET", "/desk/issues/{number}/preview/email"): PREPARERS,
    ("POST", "/desk/issues/{number}/test-send"): PREPARERS,
    ("GET", "/desk/issues/{number}/checks"): EVERYONE,
    ("POST", "/desk/issues/{number}/checks/run"): {"admin", "chief-editor", "editor"},
    ("POST", "/desk/issues/{number}/checks/override"): STAFF_MANAGERS,
    ("GET", "/desk/results"): STATS,
    ("GET", "/desk/issues/{number}/results"): STATS,
    ("GET", "/desk/readers"): READERS,
    ("GET", "/desk/readers/{subscriber_id:int}"): READERS,
    ("POST", "/desk/readers/export"): READER_MANAGERS,
    ("POST", "/desk/readers/{subscriber_id:int}/unsubscribe"): READER_MANAGERS,
    ("POST", "/desk/readers/{subscriber_id:int}/resend-confirmation"): READER_MANAGERS,
    ("GET", "/desk/readers/{subscriber_id:int}/erase"): READER_MANAGERS,
    ("POST", "/desk/readers/{subscriber_id:int}/erase"): READER_MANAGERS,
    ("GET", "/desk/ops"): OPS,
    ("GET", "/desk/ops/live"): OPS,
    ("POST", "/desk/ops/issues/{number}/{action}"): OPS,
    ("POST", "/desk/ops/domains/pause"): OPS,
    ("POST", "/desk/ops/domains/{domain}/resume"): OPS,
    ("POST", "/desk/ops/workers/{name}/drain"): OPS,
    ("GET", "/desk/readers/import"): STAFF_MANAGERS,
    ("POST", "/desk/readers/import"): STAFF_MANAGERS,
    ("GET", "/desk/readers/imports/{job_id}"): STAFF_MANAGERS,
    ("GET", "/desk/readers/imports/{job_id}/rejected.csv"): STAFF_MANAGERS,
    ("GET", "/desk/growth"): STATS,
}


def test_every_desk_route_has_an_expected_access(runtime: Runtime) -> None:
    assert set(desk_routes(create_app(runtime))) == set(EXPECTED)


@pytest.mark.parametrize("role", [*ROLES, "nobody"])
def test_role_by_route_matrix(runtime: Runtime, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "run_checks_hook", lambda rt, session, issue: [])
    with unit_of_work(runtime.sessions) as db:
        for each in ROLES:
            staff_account(db, f"{each}@example.com", each)
        other = staff_account(db, "other@example.com", "viewer")
        invited = staff_account(db, "invited@example.com", "viewer")
        invited.password_hash = None
        db.flush()
        article(db, utcnow() - timedelta(hours=1))
        issue = build_issue(db, runtime.settings, utcnow()).issue
        assert issue is not None
        upload = imports.check_upload("readers.csv", b"email\nsara@example.com\n", 1024)
        job = imports.start_import(db, CLI, upload, source="", import_as=Status.CONFIRMED, now=utcnow())
        reader = store.subscribe(db, "reader@example.org", store.Consent("web:test"), utcnow())
        fill = {"{account_id}": str(other.id), "{token}": invites.make_token(runtime, invited),
                "{number}": str(issue.number), "{item_id}": str(issue.articles[0].id),
                "{action}": "pause", "{domain}": "example.org", "{name}": "nobody@nowhere",
                "{job_id}": str(job.id), "{subscriber_id:int}": str(reader.subscriber_id)}
    client = desk_client(runtime)
    if role != "nobody":
        assert sign_in(client, f"{role}@example.com").status_code == 303
    with unit_of_work(runtime.sessions) as db:
        # Another session of the signed-in person, so revoking it is not signing out.
        mine = accounts.find(db, f"{role}@example.com") or other
        _, spare = sessions.start(db, mine, utcnow())
        fill["{session_id}"] = str(spare.id)
    for (method, template), allowed in EXPECTED.items():
        path = template
        for key, value in fill.items():
            path = path.replace(key, value)
        if method == "GET":
            response = client.get(path)
        else:
            token = csrf_from(client.get("/desk/login" if role == "nobody" or allowed is None
                                         else "/desk/api"))
            response = client.post(path, data={"csrf_token": token})
        where = f"{role} {method} {template}"
        if allowed is None:
            assert response.status_code in (200, 303, 401, 422), where
        elif role == "nobody":
            assert response.status_code == 303, where
            assert response.headers["location"].startswith("/desk/login"), where
        elif role in allowed:
            assert response.status_code not in (401, 403), where
            assert not response.headers.get("location", "").startswith("/desk/login") or \
                template == "/desk/logout", where
        else:
            assert response.status_code == 403, where
            assert "دسترسی ندارید" in response.text, where
        if template == "/desk/logout" and role != "nobody":
            assert sign_in(client, f"{role}@example.com").status_code == 303
