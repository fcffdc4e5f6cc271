"""Debian's Chromium through Playwright, and axe-core run inside a page.

Every browser test launches the same binary with the same options; axe-core is a
vendored copy (tests/support/vendor/axe-core/), so no test needs the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
# Another name for 127.0.0.1, for a CHAPAR_PUBLIC_URL that is not the address a page came from.
OTHER_NAME = "chapar-public.test"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--host-resolver-rules=MAP {OTHER_NAME} 127.0.0.1"]
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
# What "0 violations" means: every WCAG 2.0, 2.1 and 2.2 rule of levels A and AA.
# Best-practice rules (landmarks, one <main>) are left out: an email has no landmarks.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

# axe-core skips text it takes for an icon font's ligature: a word narrower than the sum
# of its letters drawn one by one. Persian letters join, so every Persian word looks like
# one, and after three such words axe skips all text in that font (its contrast is never
# checked). Words measure as the sum of their letters here, so Persian text is checked.
WORDS_AS_LETTERS = """() => {
  const measure = CanvasRenderingContext2D.prototype.measureText;
  CanvasRenderingContext2D.prototype.measureText = function (text) {
    if ([...text].length < 2) return measure.call(this, text);
    return {width: [...text].reduce((sum, letter) => sum + measure.call(this, letter).width, 0)};
  };
}"""

needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def launched_chromium() -> Iterator[Browser]:
    """One headless Chromium for a whole test module (a module-scoped fixture's body)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                             headless=True)
        yield browser
        browser.close()


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """The ASGI app served by uvicorn on 127.0.0.1:port until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def axe_violations(page: Page, tags: list[str] = WCAG_AA) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, each with the nodes at fault."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(WORDS_AS_LETTERS)
        page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        tags,
    )
    return [
        {"id": v["id"], "help": v["help"],
         "nodes": [{"target": n["target"], "summary": n.get("failureSummary", "")}
                   for n in v["nodes"]]}
        for v in result["violations"]
    ]


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under tests/artifacts/, for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
