"""Tracked article links in the email: off by default, per recipient when on, tokens that
the redirect accepts (through a key rotation too)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from service.delivery.message import IssueMessage, Recipient
from service.digests.build import rerender_issue
from service.digests.clicks import (
    ClickSigner,
    click_marker,
    mark_article_links,
    send_step,
    url_digest,
)
from service.digests.models import Issue
from service.mail.render import inline_css
from service.runtime import Runtime
from service.settings import Settings
from service.tokens import ClickLink, Purpose, Tokens
from tests.delivery.factories import make_issue

TOKENS = Tokens("k" * 40, 3600, fallback_keys=["o" * 40])
NOW = datetime(2026, 11, 27, 4, 30, 7, tzinfo=UTC)
TRACKED = re.compile(r"http://chapar\.test/r/[A-Za-z0-9_.\-]+")


def issue_message(session: Session, settings: Settings, tokens: Tokens, mode: str,
                  number: int = 3) -> tuple[IssueMessage, Issue]:
    issue = make_issue(session, number=number)
    rerender_issue(session, issue, settings)
    message = IssueMessage(
        issue_number=issue.number, subject=issue.subject, html=issue.html, text=issue.text,
        from_name=settings.from_name, from_address=settings.from_address,
        list_name=settings.list_name, list_id=settings.list_id, public_url=settings.public_url,
        verp_domain=settings.verp_domain, tokens=tokens, secret="s" * 32, click_mode=mode,
        articles=[(a.article_id, a.url) for a in issue.articles])
    return message, issue


def parts(raw: bytes) -> tuple[str, str]:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    plain, rich = (str(part.get_content()) for part in parsed.iter_parts())  # type: ignore[attr-defined]
    return plain, rich


@given(issue=st.integers(1, 2**31 - 1), article=st.integers(1, 2**31 - 1),
       step=st.integers(0, 2**40), subscriber=st.none() | st.integers(1, 2**31 - 1))
def test_fast_click_tokens_are_the_tokens_the_redirect_reads(issue: int, article: int, step: int,
                                                             subscriber: int | None) -> None:
    link = ClickLink(issue, article, url_digest(f"https://news.example.com/{article}"), step,
                     subscriber)
    token = ClickSigner(TOKENS)(link)
    assert token == TOKENS.click(link)
    assert TOKENS.read_click(token) == link


def test_a_link_signed_before_a_key_rotation_still_reads() -> None:
    link = ClickLink(4, 9, url_digest("https://news.example.com/9"), 5)
    before = Tokens("o" * 40, 3600).click(link)  # the old key was the signing key then
    assert TOKENS.read_click(before) == link
    assert Tokens("k" * 40, 3600).click(link) != before


def test_article_links_are_found_however_the_inliner_wrote_them() -> None:
    url = "https://news.example.com/خبر/۱?a=1&b=2"
    html = inline_css(f'<html><body><a href="{url.replace("&", "&amp;")}">خبر</a>'
                      f'<a href="https://elsewhere.example/">دیگر</a></body></html>')
    assert "%D8%AE" in html  # lxml percent-encoded the Persian path
    marked, text = mark_article_links(html, f"عنوان\n{url}\nhttps://elsewhere.example/\n",
                                      [(7, url)])
    assert f'href="{click_marker(7)}"' in marked and 'href="https://elsewhere.example/"' in marked
    assert text == f"عنوان\n{click_marker(7)}\nhttps://elsewhere.example/\n"


def test_with_tracking_off_the_email_links_to_the_articles_themselves(
        session: Session, runtime: Runtime) -> None:
    assert runtime.settings.track_clicks == "false"  # the default
    message, issue = issue_message(session, runtime.settings, runtime.tokens,
                                   runtime.settings.track_clicks)
    plain, rich = parts(message.render(Recipient(1, 42, "r@example.test", "example.test"), NOW))
    for article in issue.articles:
        assert f'href="{article.url}"' in rich and f"\n{article.url}\n" in plain
    assert "/r/" not in rich and "/r/" not in plain


@pytest.mark.parametrize("mode", ["true", "per-reader"])
def test_with_tracking_on_every_article_link_goes_through_a_signed_redirect(
        session: Session, runtime: Runtime, mode: str) -> None:
    message, issue = issue_message(session, runtime.settings, runtime.tokens, mode)
    [article] = issue.articles
    for subscriber in (42, 43):
        plain, rich = parts(message.render(Recipient(1, subscriber, f"r{subscriber}@example.test",
                                                     "example.test"), NOW))
        assert article.url not in rich and article.url not in plain
        links = set(TRACKED.findall(rich)) | set(TRACKED.findall(plain))
        assert len(links) == 1  # image, title, «read more» and the text part: one link
        link = runtime.tokens.read_click(links.pop().rpartition("/")[2])
        assert (link.issue_number, link.article_id) == (issue.number, article.article_id)
        assert link.url_digest == url_digest(article.url) and link.sent_step == send_step(NOW)
        # The default mode's link names nobody; the per-reader mode's names the reader.
        assert link.subscriber_id == (subscriber if mode == "per-reader" else None)
    assert "%%CHAPAR_" not in rich and "%%CHAPAR_" not in plain


def test_the_default_modes_links_are_signed_once_per_send_step(
        session: Session, runtime: Runtime) -> None:
    message, _ = issue_message(session, runtime.settings, runtime.tokens, "true")
    tracked = message.article_links
    assert tracked is not None
    first = tracked.values(1, NOW)
    assert tracked.values(2, NOW + timedelta(seconds=1)) is first  # same step: no signing
    assert tracked.values(3, NOW + timedelta(seconds=10)) != first


def test_a_body_encoded_once_per_step_still_carries_each_readers_own_links(
        session: Session, runtime: Runtime) -> None:
    message, _ = issue_message(session, runtime.settings, runtime.tokens, "true")
    seen = {}
    for subscriber, at in ((1, NOW), (2, NOW), (3, NOW + timedelta(seconds=10)), (4, NOW)):
        plain, rich = parts(message.render(Recipient(subscriber, subscriber, "r@example.test",
                                                     "example.test"), at))
        unsubscribe = runtime.tokens.lasting(Purpose.UNSUBSCRIBE, subscriber)
        assert f"/unsubscribe/{unsubscribe}?i=" in rich and f"/unsubscribe/{unsubscribe}" in plain
        [link] = set(TRACKED.findall(rich))
        assert runtime.tokens.read_click(link.rpartition("/")[2]).sent_step == send_step(at)
        seen[subscriber] = link
    assert seen[1] == seen[2] == seen[4] != seen[3]
