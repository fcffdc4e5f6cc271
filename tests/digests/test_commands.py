"""The first-run commands on the embedded SQLite default, as a newcomer runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.mail.placeholders import SAMPLE_TOKEN
from tests.articles.feeds import RSS
from tests.articles.feedserver import Route, feed_server

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "service/articles/sample/feed.xml"
SAMPLE_LOOKBACK = {"digest_max_lookback_days": "36500"}


def chapar(data_dir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAPAR_")}
    env["CHAPAR_DATA_DIR"] = str(data_dir)  # only so the test keeps its files to itself
    env.update({f"CHAPAR_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_sample_feed_then_a_draft_issue_then_its_preview(tmp_path: Path) -> None:
    assert chapar(tmp_path, "db", "upgrade").returncode == 0
    fetched = chapar(tmp_path, "articles", "fetch", SAMPLE)
    assert fetched.returncode == 0, fetched.stderr
    assert "added 13" in fetched.stdout
    again = chapar(tmp_path, "articles", "fetch", SAMPLE)
    assert "added 0" in again.stdout and "unchanged 13" in again.stdout

    # The sample articles carry fixed dates, as in scripts/demo.
    built = chapar(tmp_path, "digest", "build", **SAMPLE_LOOKBACK)
    assert built.returncode == 0, built.stderr
    assert "built draft issue 1 with 10 articles" in built.stdout
    preview = tmp_path / "previews" / "issue-1.html"
    assert preview.as_uri() in built.stdout
    assert 'dir="rtl"' in preview.read_text(encoding="utf-8")

    # Issue 1 was never sent: building again replaces it under the same number.
    rebuilt = chapar(tmp_path, "digest", "build", **SAMPLE_LOOKBACK)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "built draft issue 1 with 10 articles" in rebuilt.stdout
    assert "replaces the unsent draft 1" in rebuilt.stdout

    out = tmp_path / "out"
    shown = chapar(tmp_path, "digest", "preview", "1", "--output", str(out),
                   public_url="https://news.example.com/newsletter/")
    assert shown.returncode == 0, shown.stderr
    # A preview shows what a reader sees: sample links where each reader's own links go.
    text = (out / "issue-1.txt").read_text(encoding="utf-8")
    html = (out / "issue-1.html").read_text(encoding="utf-8")
    for body in (text, html):
        assert "%%CHAPAR_" not in body and "خبرنامه" in body
        assert f"https://news.example.com/newsletter/unsubscribe/{SAMPLE_TOKEN}" in body
        assert f"https://news.example.com/newsletter/preferences/{SAMPLE_TOKEN}" in body
    for body in (preview, tmp_path / "previews" / "issue-1.txt"):
        assert "%%CHAPAR_" not in body.read_text(encoding="utf-8")
    assert chapar(tmp_path, "digest", "preview", "7").returncode != 0


def test_fetch_refuses_what_it_must(tmp_path: Path) -> None:
    assert chapar(tmp_path, "db", "upgrade").returncode == 0
    local = chapar(tmp_path, "articles", "fetch", "http://127.0.0.1:9/feed.xml")
    assert local.returncode != 0 and "refusing" in local.stderr
    scheme = chapar(tmp_path, "articles", "fetch", "file:///etc/passwd")
    assert scheme.returncode != 0 and "only http and https" in scheme.stderr


def test_fetch_reaches_a_private_feed_host_only_when_it_is_listed(tmp_path: Path) -> None:
    assert chapar(tmp_path, "db", "upgrade").returncode == 0
    with feed_server() as server:
        server.routes["/feed.xml"] = Route(body=RSS.encode())
        url = server.url("/feed.xml")
        unlisted = chapar(tmp_path, "articles", "fetch", url, feed_allowed_hosts="feeds.internal")
        assert unlisted.returncode != 0 and "refusing to connect to 127.0.0.1" in unlisted.stderr
        assert server.requests == []
        typo = chapar(tmp_path, "articles", "fetch", url, feed_allowed_hosts="127.0.0.1:8080")
        assert typo.returncode != 0 and "CHAPAR_FEED_ALLOWED_HOSTS" in typo.stderr
        listed = chapar(tmp_path, "articles", "fetch", url, feed_allowed_hosts="feeds.internal, 127.0.0.1")
        assert listed.returncode == 0, listed.stderr
        assert "added 3" in listed.stdout and len(server.requests) == 1
