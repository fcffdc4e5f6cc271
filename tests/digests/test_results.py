"""Per-issue results: the figures, the unsubscribe link that names its issue, and the proof
that a real send's unsubscribe and bounce show as 1 and 1 on the desk, the API and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Bounce, Delivery, DeliveryStatus
from service.delivery.sender import DeliveryAgent
from service.digests.models import Issue, IssueStatus
from service.digests.results import Figure, issue_results, recent_results
from service.runtime import Runtime
from service.subscribers.models import Status, Subscriber, SubscriberEvent
from tests.bounces.messages import hard_bounce
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_commands import chapar
from tests.staff.factories import staff_account
from tests.support.smtp import SmtpRecorder
from tests.web.desk.support import desk_client, sign_in

API_KEY = {"Authorization": "Bearer test-api-key"}


def started(rt: Runtime, number: int, readers: int, prefix: str = "reader") -> int:
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, readers, prefix=prefix)
        issue_id = make_issue(session, number=number).id
    with unit_of_work(rt.sessions) as session:
        ledger.start_send(session, issue_id, utcnow(), timedelta(hours=1))
    return issue_id


def results_of(rt: Runtime, number: int) -> dict[str, object]:
    with rt.sessions() as session:
        issue = session.scalars(select(Issue).where(Issue.number == number)).one()
        return issue_results(session, issue).as_dict()


def test_figures_count_each_outcome_once_and_rate_it_against_its_whole(runtime: Runtime) -> None:
    issue_id = started(runtime, 4, 10)
    other_id = started(runtime, 5, 2, prefix="other")
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        rows = session.scalars(select(Delivery).where(Delivery.issue_id == issue_id)
                               .order_by(Delivery.id)).all()
        for row, status in zip(rows, [DeliveryStatus.SENT] * 6 + [DeliveryStatus.DEFERRED] * 2
                               + [DeliveryStatus.FAILED], strict=False):
            row.status = status
        # rows[9] stays queued. Hard, soft twice (one delivery), a complaint.
        for row, kind in ((rows[0], "hard"), (rows[1], "soft"), (rows[1], "soft"),
                          (rows[2], "complaint")):
            session.add(Bounce(received_at=now, delivery_id=row.id, subscriber_id=row.subscriber_id,
                               kind=kind))
        other = session.scalars(select(Delivery).where(Delivery.issue_id == other_id)).first()
        assert other is not None
        session.add(Bounce(received_at=now, delivery_id=other.id, kind="hard"))
        for row, detail in ((rows[3], "issue:4"), (rows[4], "issue:5"), (rows[5], None)):
            session.add(SubscriberEvent(subscriber_id=row.subscriber_id, at=now, kind="unsubscribe",
                                        source="unsubscribe link", detail=detail))
    figures = results_of(runtime, 4)
    assert figures["recipients"] == 10
    assert figures["sent"] == {"count": 6, "rate": 0.6}
    assert figures["deferred"] == {"count": 2, "rate": 0.2}
    assert figures["failed"] == {"count": 1, "rate": 0.1}
    assert figures["pending"] == {"count": 1, "rate": 0.1}
    assert figures["bounced"] == {"count": 2, "rate": round(2 / 6, 4)}
    assert figures["bounced_hard"]["count"] == 1 and figures["bounced_soft"]["count"] == 1  # type: ignore[index]
    assert figures["complaints"] == {"count": 1, "rate": round(1 / 6, 4)}
    assert figures["unsubscribed"] == {"count": 1, "rate": round(1 / 6, 4)}
    assert figures["clicks"] is None and figures["human_clicks"] is None
    assert results_of(runtime, 5)["bounced"] == {"count": 1, "rate": None}  # nothing sent yet


def test_an_issue_nobody_received_has_no_rates() -> None:
    assert Figure.of(0, 0) == Figure(0, None)


def test_the_trend_lists_issues_that_went_out_oldest_first(runtime: Runtime) -> None:
    for number in (1, 2, 3):
        started(runtime, number, 1, prefix=f"r{number}-")
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, number=9)  # a draft: no results yet
        session.execute(update(Issue).where(Issue.number == 1).values(status=IssueStatus.SENT))
    with runtime.sessions() as session:
        assert [r.issue_number for r in recent_results(session, limit=2)] == [2, 3]
        assert [r.issue_number for r in recent_results(session)] == [1, 2, 3]


def unsubscribe_url(smtp: SmtpRecorder, email: str) -> str:
    header = str(smtp.to(email)[0].message["List-Unsubscribe"])
    parts = urlsplit(header.strip("<>"))
    return f"{parts.path}?{parts.query}"


def test_an_unsubscribe_counts_for_the_issue_whose_link_was_used_only(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id = started(runtime, 6, 4)
    DeliveryAgent(runtime).deliver(issue_id)
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, number=8)  # an issue none of them was sent
    client = desk_client(runtime)
    one_click = {"content": b"List-Unsubscribe=One-Click",
                 "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    url = unsubscribe_url(smtp, "reader0@example.test")
    assert url.endswith("?i=6")
    page = client.get(url)
    assert page.status_code == 200 and "?i=6" in page.text  # the page's form keeps the issue
    assert client.post(url, **one_click).status_code == 200  # type: ignore[arg-type]
    # The same link without the issue (mailed before issues were named) still works.
    old = unsubscribe_url(smtp, "reader1@example.test").partition("?")[0]
    assert client.post(old, **one_click).status_code == 200  # type: ignore[arg-type]
    # A hand-edited number of an issue the reader never got is not believed.
    edited = unsubscribe_url(smtp, "reader2@example.test").replace("?i=6", "?i=8")
    assert client.post(edited, **one_click).status_code == 200  # type: ignore[arg-type]
    with runtime.sessions() as session:
        assert session.scalar(select(Subscriber.status).where(
            Subscriber.email == "reader1@example.test")) is Status.UNSUBSCRIBED
    assert results_of(runtime, 6)["unsubscribed"] == {"count": 1, "rate": 0.25}
    assert results_of(runtime, 8)["unsubscribed"]["count"] == 0  # type: ignore[index]


def test_proof_a_real_send_with_one_unsubscribe_and_one_bounce_shows_1_and_1_everywhere(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    issue_id = started(runtime, 7, 5)
    report = DeliveryAgent(runtime).deliver(issue_id)
    assert report.finished
    client = desk_client(runtime)
    # One reader presses the mail client's unsubscribe button (RFC 8058 one-click POST).
    unsubscribed = client.post(unsubscribe_url(smtp, "reader0@example.test"),
                               content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsubscribed.status_code == 200
    # Another reader's mailbox does not exist: the receiving server's report comes back.
    bounced = smtp.to("reader1@example.test")[0]
    intake = client.post("/api/v1/bounces", content=hard_bounce(bounced.mail_from,
                                                                "reader1@example.test"),
                         headers={**API_KEY, "Content-Type": "message/rfc822"})
    assert intake.status_code == 202 and intake.json()["outcome"] == "hard"

    api = client.get("/api/v1/issues/7/stats", headers=API_KEY)
    assert api.status_code == 200
    figures = api.json()
    assert figures["sent"]["count"] == 5
    assert figures["unsubscribed"] == {"count": 1, "rate": 0.2}
    assert figures["bounced"] == {"count": 1, "rate": 0.2}
    assert figures["bounced_hard"]["count"] == 1 and figures["complaints"]["count"] == 0
    assert {"deferred", "failed", "clicks", "human_clicks"} <= set(figures)

    cli = chapar(runtime, "digest", "stats", "7", "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == figures
    text = chapar(runtime, "digest", "stats", "7").output
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:-1]}
    assert lines["unsubscribed"] == ["1", "20.00%"] and lines["bounced"] == ["1", "20.00%"]

    with unit_of_work(runtime.sessions) as session:
        staff_account(session, "editor@example.com", "editor")
    assert sign_in(client, "editor@example.com").status_code == 303
    page = client.get("/desk/issues/7/results")
    assert page.status_code == 200
    assert "<th scope=\"row\">لغو عضویت با پیوند همین شماره</th><td class=\"num\">۱</td>" in page.text
    assert "<th scope=\"row\">برگشتی دائم</th><td class=\"num\">۱</td>" in page.text
    assert "Apple Mail" in page.text and "شمارش کلیک خاموش است" in page.text
    overview = client.get("/desk/results")
    assert overview.status_code == 200 and "<svg class=\"trend\"" in overview.text
    assert 'href="/desk/issues/7/results">۷</a>' in overview.text


def test_the_api_wants_the_key_and_a_real_issue(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, number=3)
    client = desk_client(runtime)
    assert client.get("/api/v1/issues/3/stats").status_code == 401
    assert client.get("/api/v1/issues/3/stats", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/api/v1/issues/4/stats", headers=API_KEY).status_code == 404
    assert client.get("/api/v1/issues/3/stats", headers=API_KEY).json()["recipients"] == 0
    assert chapar(runtime, "digest", "stats", "4").exit_code == 1


def test_a_viewer_without_stats_view_is_refused_the_results_pages(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        make_issue(session, number=3)
        staff_account(session, "viewer@example.com", "viewer")
    client = desk_client(runtime)
    assert sign_in(client, "viewer@example.com").status_code == 303
    for path in ("/desk/results", "/desk/issues/3/results"):
        refused = client.get(path)
        assert refused.status_code == 403 and "دسترسی ندارید" in refused.text
    assert "/desk/results" not in client.get("/desk/").text


def test_the_issue_page_shows_clicks_per_article_and_why_some_were_set_aside(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    from tests.web.test_clicks import BROWSER, SCANNER, links_of, sent

    runtime.settings.track_clicks = "true"
    sent(runtime, 14, articles=2)
    first, second = links_of(smtp, "n14-0@example.test")
    client = desk_client(runtime)
    other = {"User-Agent": BROWSER["User-Agent"] + " other"}
    for link, agent in ((first, BROWSER), (first, SCANNER), (second, other)):
        assert client.get(link, headers=agent).status_code == 302
    with unit_of_work(runtime.sessions) as session:
        staff_account(session, "editor@example.com", "editor")
    assert sign_in(client, "editor@example.com").status_code == 303
    page = client.get("/desk/issues/14/results").text
    assert "شمارش کلیک روشن است" in page and "Apple Mail" in page
    assert '<th scope="row">همهٔ کلیک‌ها</th><td class="num">۳</td>' in page
    assert '<th scope="row">کلیک‌های احتمالاً انسانی</th><td class="num">۲</td>' in page
    assert 'پویشگر پیوند یا ربات شناخته‌شده</th><td class="num">۱</td>' in page
    assert page.count('<svg class="click-bar"') == 2
    assert 'aria-label="۲ کلیک، ۱ انسانی"' in page
    overview = client.get("/desk/results").text
    assert "<th scope=\"col\">کلیک انسانی</th>" in overview
    # Turned off later, the clicks of an issue that counted them still show.
    runtime.settings.track_clicks = "false"
    page = client.get("/desk/issues/14/results").text
    assert "شمارش کلیک خاموش است" in page and "همهٔ کلیک‌ها" in page
