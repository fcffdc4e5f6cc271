"""GET /api/v1/growth, `chapar subscribers growth --json` and /desk/growth show the same figures."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from service.clock import utcnow
from service.db import unit_of_work
from service.persian import persian_digits
from service.runtime import Runtime
from service.subscribers import store
from service.web.app import create_app
from tests.staff.factories import staff_account
from tests.subscribers.factories import confirm
from tests.test_cli_subscribers import chapar
from tests.web.desk.support import desk_client, sign_in

KEY = {"Authorization": "Bearer test-api-key"}


def some_history(rt: Runtime) -> None:
    now = utcnow()
    consent = store.Consent("web:test")
    with unit_of_work(rt.sessions) as session:
        for n, days_ago in enumerate((0, 0, 1, 9, 9, 9, 20)):
            when = now - timedelta(days=days_ago)
            sid = store.subscribe(session, f"r{n}@example.com", consent, when).subscriber_id
            if n % 2 == 0:
                confirm(session, sid, when)
            if n == 4:
                store.unsubscribe(session, sid, now, "unsubscribe link")


def weeks_only(document: dict[str, object]) -> object:
    return document["weeks"], document["totals"]


def test_the_api_the_command_and_the_page_agree(runtime: Runtime) -> None:
    some_history(runtime)
    api = TestClient(create_app(runtime))
    response = api.get("/api/v1/growth?weeks=4", headers=KEY)
    assert response.status_code == 200
    from_api = response.json()
    assert from_api["timezone"] == "Asia/Tehran" and len(from_api["weeks"]) == 4
    # Four weeks reach back at least 21 days: every request above is in them.
    assert from_api["totals"]["subscribed"] == 7 and from_api["totals"]["unsubscribed"] == 1
    cli = chapar(runtime, "subscribers", "growth", "--weeks", "4", "--json")
    assert cli.exit_code == 0, cli.output
    assert weeks_only(json.loads(cli.stdout)) == weeks_only(from_api)
    text = chapar(runtime, "subscribers", "growth", "--weeks", "4").stdout.splitlines()
    assert text[0].startswith("week starting (Saturday, Asia/Tehran)") and len(text) == 5
    assert [line.split()[1] for line in text[1:]] == [str(w["subscribed"]) for w in from_api["weeks"]]

    with unit_of_work(runtime.sessions) as db:
        staff_account(db, "ops@example.com", "ops")
    desk = desk_client(runtime)
    assert sign_in(desk, "ops@example.com").status_code == 303
    page = desk.get("/desk/growth?weeks=4")
    assert page.status_code == 200
    rows = re.findall(r"<tr>\s*<th scope=\"row\">([^<]+)</th>((?:\s*<td class=\"num\">[^<]*</td>)+)",
                      page.text)
    table = {label: re.findall(r'<td class="num">([^<]*)</td>', cells) for label, cells in rows}
    for week in from_api["weeks"]:
        rate = week["confirmation_rate"]
        assert table[week["label_fa"]] == [persian_digits(week[k]) for k in
                                           ("subscribed", "imported", "confirmed", "unsubscribed")] + [
            "–" if rate is None else persian_digits(f"{rate * 100:.1f}") + "٪"]
    assert table["جمع"][0] == persian_digits(from_api["totals"]["subscribed"])
    assert page.text.count("<rect") >= 3 * 4  # three bars a week on the counts chart


def test_the_api_needs_the_key_and_a_sensible_range(runtime: Runtime) -> None:
    api = TestClient(create_app(runtime))
    assert api.get("/api/v1/growth").status_code == 401
    assert api.get("/api/v1/growth", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/api/v1/growth?weeks=0", headers=KEY).status_code == 422
    assert api.get("/api/v1/growth?weeks=1000", headers=KEY).status_code == 422
    assert len(api.get("/api/v1/growth", headers=KEY).json()["weeks"]) == 12
