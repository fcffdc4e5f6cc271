"""Build and render a ten-article issue once, then personalise it for 10,000 recipients.

Prints the cost of build + render + CSS inlining for the issue (first run and the
median of the next runs), and the cost per recipient of filling in the
unsubscribe and preferences links, with and without signing the tokens, and of a
whole message (IssueMessage.render) with click tracking off, on, and per reader.
Inlining once per issue is what keeps the per-recipient figure far under a millisecond.
The database is a throwaway SQLite file; nothing leaves this machine.

    .venv/bin/python -m bench.render_digest [--recipients 10000] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from service.articles.ingest import make_article, upsert_articles
from service.db import make_engine, make_session_factory
from service.delivery.message import IssueMessage, Recipient
from service.digests.build import build_issue
from service.digests.models import Issue
from service.mail.placeholders import PREFERENCES_URL, UNSUBSCRIBE_URL, Personalizer
from service.migrations import upgrade
from service.settings import Settings
from service.tokens import Purpose, Tokens

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)
ZWNJ = "\u200c"
SUMMARY = (
    "به گزارش خبرنگار ما، نشست امروز با حضور نمایندگان استان‌ها برگزار شد و درباره برنامه‌های "
    "سال آینده گفتگو شد. گزارش‌ها نشان می‌دهد طرح‌های نیمه‌تمام عمرانی در اولویت قرار دارند و "
    "بودجه آن‌ها تا پایان سال تأمین می‌شود. "
) * 2


def ten_articles(session_factory: sessionmaker[Session], now: datetime) -> None:
    """Ten articles with long Persian summaries and images, as a CMS would send them."""
    items = [
        make_article(
            url=f"https://news.example.com/2026/11/{1000 + i}",
            title=f"گزارش{ZWNJ}های هفته: نشست COP31 و برنامه هسته{ZWNJ}ای ({i + 1})",
            summary=f"<p>{SUMMARY}</p>", section=("اقتصاد", "جامعه", "بین‌الملل")[i % 3],
            author="مریم احمدی", image_url=f"https://news.example.com/images/{i}.jpg",
            published_at=now - timedelta(hours=i + 1), source="bench",
        )
        for i in range(10)
    ]
    with session_factory() as session:
        upsert_articles(session, items, now)
        session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10, help="builds to time after the first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        settings = Settings(environment="test", data_dir=Path(folder), public_url="https://chapar.example.com")
        ten_articles(sessions, NOW)

        timings: list[float] = []
        html = text = ""
        articles: list[tuple[int, str]] = []
        for _run in range(args.runs + 1):
            with sessions() as session:
                started = time.perf_counter()
                issue = build_issue(session, settings, NOW).issue
                timings.append(time.perf_counter() - started)
                assert issue is not None and len(issue.articles) == 10
                html, text = issue.html, issue.text
                articles = [(a.article_id, a.url) for a in issue.articles]
                session.rollback()  # build the same issue again next run
            with sessions() as session:
                session.execute(delete(Issue))
                session.commit()
        engine.dispose()

    first, rest = timings[0], timings[1:]
    html_kb, text_kb = len(html.encode()) / 1024, len(text.encode()) / 1024
    median = statistics.median(rest)
    print(f"issue: 10 articles, HTML {html_kb:.1f} KB, text {text_kb:.1f} KB")
    print(f"build + render + inline, first run:           {first * 1000:8.1f} ms")
    print(f"build + render + inline, median of {len(rest):>2} runs:   {median * 1000:8.1f} ms")

    html_template, text_template = Personalizer(html), Personalizer(text)
    base = settings.public_url
    links = [{UNSUBSCRIBE_URL: f"{base}/u/{n:012d}", PREFERENCES_URL: f"{base}/p/{n:012d}"}
             for n in range(args.recipients)]
    started = time.perf_counter()
    size = 0
    for values in links:
        size += len(html_template.fill(values)) + len(text_template.fill(values))
    fill = (time.perf_counter() - started) / args.recipients
    print(f"personalise (HTML + text), per recipient:      {fill * 1e6:8.1f} µs "
          f"({args.recipients:,} recipients, {size / 1e6:.0f} M characters)")

    tokens = Tokens(settings.secret_key, settings.confirm_token_max_age)
    started = time.perf_counter()
    for n in range(args.recipients):
        values = {UNSUBSCRIBE_URL: f"{base}/unsubscribe/{tokens.lasting(Purpose.UNSUBSCRIBE, n)}",
                  PREFERENCES_URL: f"{base}/preferences/{tokens.lasting(Purpose.PREFERENCES, n)}"}
        html_template.fill(values)
        text_template.fill(values)
    signed = (time.perf_counter() - started) / args.recipients
    print(f"personalise with two signed tokens, per recipient: {signed * 1e6:8.1f} µs")

    for mode in ("false", "true", "per-reader"):
        message = IssueMessage(
            issue_number=1, subject="خبرنامه", html=html, text=text, from_name="خبرنامه",
            from_address="news@chapar.example.com", list_name="خبرنامه",
            list_id="weekly.chapar.example.com", public_url=base, verp_domain="chapar.example.com",
            tokens=tokens, secret="s" * 32, click_mode=mode, articles=articles)
        started = time.perf_counter()
        for n in range(1, args.recipients + 1):
            # A thousand messages a second; the default mode signs its links and encodes the
            # body before the reader's own links once per 10-second step.
            message.render(Recipient(n, n, f"r{n}@example.com", "example.com"),
                           NOW + timedelta(milliseconds=n))
        whole = (time.perf_counter() - started) / args.recipients
        print(f"whole message, clicks {mode:<10}, per recipient: {whole * 1e6:8.1f} µs")


if __name__ == "__main__":
    main()
