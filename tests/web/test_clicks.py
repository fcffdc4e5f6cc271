"""`/r/<token>` after a real send: it redirects only to its article, counts per article
(per reader only when asked), sets scanners apart, and shows up in the API and the CLI."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.clock import utcnow
from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.sender import DeliveryAgent
from service.digests.build import rerender_issue
from service.digests.clicks import url_digest
from service.digests.models import Click, IssueArticle
from service.runtime import Runtime
from service.subscribers.models import Subscriber
from service.tokens import ClickLink, Purpose, TokenError, Tokens
from tests.conftest import TEST_SECRET
from tests.delivery.factories import add_subscribers, make_issue
from tests.delivery.test_commands import chapar
from tests.digests.factories import article
from tests.support.smtp import SmtpRecorder
from tests.web.desk.support import desk_client

API_KEY = {"Authorization": "Bearer test-api-key"}
BROWSER = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                         "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}
SCANNER = {"User-Agent": "Barracuda Sentinel (EE)"}
TRACKED = re.compile(r'href="https?://[^"/]+(/r/[^"]+)"')


def sent(rt: Runtime, number: int, *, readers: int = 2, articles: int = 1,
         ago: timedelta = timedelta(hours=1)) -> list[str]:
    """Send issue `number` with `articles` articles to `readers` readers `ago`; return its
    article URLs in email order."""
    at = utcnow() - ago
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, readers, prefix=f"n{number}-")
        issue = make_issue(session, number=number)
        for position in range(2, articles + 1):
            extra = article(session, at - timedelta(hours=position))
            session.add(IssueArticle(issue_id=issue.id, article_id=extra.id, position=position,
                                     title=extra.title, summary_html=extra.summary_html,
                                     url=extra.url, image_url=None, section=None, author=None,
                                     published_at=extra.published_at))
        session.flush()
        session.refresh(issue)
        rerender_issue(session, issue, rt.settings)
        issue_id = issue.id
        urls = [a.url for a in sorted(issue.articles, key=lambda a: a.position)]
    with unit_of_work(rt.sessions) as session:
        ledger.start_send(session, issue_id, at, timedelta(hours=48))
    assert DeliveryAgent(rt, clock=lambda: at).deliver(issue_id).finished
    return urls


def links_of(smtp: SmtpRecorder, email: str) -> list[str]:
    """The tracked links of one reader's email, once each, in order."""
    html = smtp.to(email)[0].message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return list(dict.fromkeys(TRACKED.findall(html)))


def clicks(rt: Runtime) -> list[Click]:
    with rt.sessions() as session:
        return list(session.scalars(select(Click).order_by(Click.id)))


def test_a_signed_link_redirects_to_its_article_and_counts_one_click(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    [url] = sent(runtime, 5)
    [link] = links_of(smtp, "n5-0@example.test")
    assert links_of(smtp, "n5-1@example.test") == [link]  # same step, nobody named: same link
    answer = desk_client(runtime).get(link, headers=BROWSER)
    assert answer.status_code == 302 and answer.headers["location"] == url
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"  # the token stays with us
    [click] = clicks(runtime)
    assert click.filtered is None and click.subscriber_id is None  # a person's, nobody's


def test_an_altered_token_or_one_for_a_foreign_url_redirects_nowhere(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    sent(runtime, 6)
    [link] = links_of(smtp, "n6-0@example.test")
    client = desk_client(runtime)
    altered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    refused = client.get(altered, headers=BROWSER)
    assert refused.status_code == 400 and "location" not in refused.headers
    assert "این پیوند نامعتبر است" in refused.text and 'dir="rtl"' in refused.text
    link_data = runtime.tokens.read_click(link.rpartition("/")[2])
    # Signed with the right key, but for a URL that is not the article's in that issue.
    foreign = runtime.tokens.click(link_data._replace(url_digest=url_digest("https://evil.example/")))
    refused = client.get(f"/r/{foreign}", headers=BROWSER)
    assert refused.status_code == 404 and "location" not in refused.headers
    assert "به خبری از این خبرنامه نمی‌رسد" in refused.text
    # The article of another issue, or an issue that does not exist: the same.
    for other in (link_data._replace(article_id=link_data.article_id + 1000),
                  link_data._replace(issue_number=999)):
        assert client.get(f"/r/{runtime.tokens.click(other)}").status_code == 404
    assert clicks(runtime) == []


def test_head_and_scanners_are_counted_apart_from_people(runtime: Runtime,
                                                         smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    sent(runtime, 7)
    [link] = links_of(smtp, "n7-0@example.test")
    client = desk_client(runtime)
    head = client.head(link, headers=BROWSER)
    assert head.status_code == 302  # a HEAD gets the redirect's headers
    assert client.get(link, headers=SCANNER).status_code == 302
    assert client.get(link, headers={"User-Agent": ""}).status_code == 302
    assert client.get(link, headers=BROWSER).status_code == 302
    assert [c.filtered for c in clicks(runtime)] == ["head", "scanner", "scanner", None]
    figures = client.get("/api/v1/issues/7/stats", headers=API_KEY).json()
    assert figures["clicks"] == 4 and figures["human_clicks"] == 1
    assert figures["clicks_filtered"] == {"head": 1, "scanner": 2, "too_soon": 0, "burst": 0}


def test_a_click_right_after_delivery_is_filtered(runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    sent(runtime, 8, ago=timedelta(seconds=1))
    [link] = links_of(smtp, "n8-0@example.test")
    assert desk_client(runtime).get(link, headers=BROWSER).status_code == 302
    assert [c.filtered for c in clicks(runtime)] == ["too_soon"]


@pytest.mark.parametrize("store", ["process", "redis"])
def test_many_links_of_one_issue_from_one_client_within_a_second_are_a_burst(
        runtime: Runtime, smtp: SmtpRecorder, redis_db: str, store: str) -> None:
    runtime.settings.track_clicks = "true"
    if store == "redis":
        runtime.settings.redis_url = redis_db
    sent(runtime, 9, articles=4)
    links = links_of(smtp, "n9-0@example.test")
    assert len(links) == 4
    client = desk_client(runtime)
    for link in links[:3]:  # a scanner opens every link at once
        assert client.get(link, headers=BROWSER).status_code == 302
    assert [c.filtered for c in clicks(runtime)] == ["burst"] * 3
    # Another client (another browser) reading one article is a person.
    assert client.get(links[3], headers={"User-Agent": BROWSER["User-Agent"] + " other"}
                      ).status_code == 302
    assert [c.filtered for c in clicks(runtime)] == ["burst"] * 3 + [None]
    assert runtime.redis is None or not any(
        key.startswith(b"chapar:click-burst") and b"testclient" in key
        for key in runtime.redis.keys("*"))  # the client's address is never written down


def test_per_reader_mode_records_the_reader_and_the_default_does_not(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "per-reader"
    sent(runtime, 10)
    mine, theirs = links_of(smtp, "n10-0@example.test"), links_of(smtp, "n10-1@example.test")
    assert mine != theirs
    client = desk_client(runtime)
    assert client.get(mine[0], headers=BROWSER).status_code == 302
    runtime.settings.track_clicks = "true"  # the same link followed in the default mode
    assert client.get(mine[0], headers=BROWSER).status_code == 302
    with runtime.sessions() as session:
        reader = session.scalars(select(Subscriber.id).where(
            Subscriber.email == "n10-0@example.test")).one()
    assert [c.subscriber_id for c in clicks(runtime)] == [reader, None]


def test_with_tracking_off_an_old_link_still_leads_to_its_article_uncounted(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    [url] = sent(runtime, 11)
    [link] = links_of(smtp, "n11-0@example.test")
    runtime.settings.track_clicks = "false"
    answer = desk_client(runtime).get(link, headers=BROWSER)
    assert answer.status_code == 302 and answer.headers["location"] == url
    assert clicks(runtime) == []


def test_links_mailed_before_a_key_rotation_keep_working(runtime: Runtime,
                                                         smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    [url] = sent(runtime, 12)
    [link] = links_of(smtp, "n12-0@example.test")
    new_secret = "a-new-secret-key-that-is-long-enough-9876543210"
    runtime.tokens = Tokens(new_secret, 3600, fallback_keys=[TEST_SECRET])
    answer = desk_client(runtime).get(link, headers=BROWSER)
    assert answer.status_code == 302 and answer.headers["location"] == url
    runtime.tokens = Tokens(new_secret, 3600)  # the old key dropped: the link is refused
    assert desk_client(runtime).get(link, headers=BROWSER).status_code == 400
    assert len(clicks(runtime)) == 1


def test_the_api_and_the_cli_show_clicks_per_issue_and_article(runtime: Runtime,
                                                               smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    urls = sent(runtime, 13, articles=2)
    first, second = links_of(smtp, "n13-0@example.test")
    client = desk_client(runtime)
    # Two readers (two browsers): one link each is no burst.
    other = {"User-Agent": BROWSER["User-Agent"] + " other"}
    for link, agent in ((first, BROWSER), (first, SCANNER), (second, other)):
        assert client.get(link, headers=agent).status_code == 302
    figures = client.get("/api/v1/issues/13/stats", headers=API_KEY).json()
    assert figures["clicks"] == 3 and figures["human_clicks"] == 2
    assert [(a["url"], a["clicks"], a["human_clicks"]) for a in figures["article_clicks"]] == [
        (urls[0], 2, 1), (urls[1], 1, 1)]
    cli = chapar(runtime, "digest", "stats", "13", "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == figures
    text = chapar(runtime, "digest", "stats", "13").output
    assert re.search(r"^  clicks +3$", text, re.M) and re.search(r"^    human +2$", text, re.M)


def test_the_preferences_page_says_which_mode_is_in_force(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        add_subscribers(session, 1, prefix="pref")
        reader = session.scalars(select(Subscriber.id)).one()
    client = desk_client(runtime)
    path = f"/preferences/{runtime.tokens.lasting(Purpose.PREFERENCES, reader)}"
    said = {}
    for mode in ("false", "true", "per-reader"):
        runtime.settings.track_clicks = mode
        page = client.get(path)
        assert page.status_code == 200 and "تصویر ردیابی" in page.text
        said[mode] = page.text
    assert "شمرده نمی‌شود" in said["false"]
    assert "نام و نشانی شما همراه کلیک ثبت نمی‌شود" in said["true"]
    assert "همراه با عضویت‌تان ثبت می‌شود" in said["per-reader"]


def test_a_token_of_another_purpose_is_not_a_click_link(runtime: Runtime) -> None:
    with pytest.raises(TokenError, match="invalid"):
        runtime.tokens.read_click(runtime.tokens.lasting(Purpose.UNSUBSCRIBE, 5))
    token = runtime.tokens.click(ClickLink(1, 1, url_digest("https://x.example/"), 1))
    assert runtime.tokens.read_click(token).issue_number == 1


def test_a_reader_recorded_per_reader_finds_their_clicks_in_their_data_export(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "per-reader"
    [url] = sent(runtime, 15)
    client = desk_client(runtime)
    assert client.get(links_of(smtp, "n15-0@example.test")[0], headers=BROWSER).status_code == 302
    with runtime.sessions() as session:
        reader, other = session.scalars(select(Subscriber.id).where(
            Subscriber.email.in_(["n15-0@example.test", "n15-1@example.test"]))
            .order_by(Subscriber.email)).all()
    export = f"/preferences/{runtime.tokens.lasting(Purpose.PREFERENCES, reader)}/export.json"
    [click] = client.get(export).json()["clicks"]
    assert click["issue"] == 15 and click["url"] == url
    export = f"/preferences/{runtime.tokens.lasting(Purpose.PREFERENCES, other)}/export.json"
    assert client.get(export).json()["clicks"] == []


def test_a_client_over_its_rate_limit_is_redirected_but_not_counted(
        runtime: Runtime, smtp: SmtpRecorder) -> None:
    runtime.settings.track_clicks = "true"
    runtime.settings.click_rate_per_client = "2/minute"
    [url] = sent(runtime, 16)
    [link] = links_of(smtp, "n16-0@example.test")
    client = desk_client(runtime)
    for _ in range(4):
        answer = client.get(link, headers=BROWSER)
        assert answer.status_code == 302 and answer.headers["location"] == url
    assert len(clicks(runtime)) == 2
