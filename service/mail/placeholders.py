"""Per-recipient placeholders in an issue rendered once for everybody.

The digest is rendered and CSS-inlined once per issue with these markers where
per-recipient values go; at send time they are replaced by cheap string joins.
The markers are plain ASCII with no characters that HTML escaping, CSS inlining or
URL handling would touch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

UNSUBSCRIBE_URL = "%%CHAPAR_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%CHAPAR_PREFERENCES_URL%%"
ALL = (UNSUBSCRIBE_URL, PREFERENCES_URL)
# A tracked article link (service.digests.clicks): the prefix, the article's id, the end.
# The sender adds these to an issue's bodies; stored issues never hold them.
CLICK_MARKER_PREFIX = "%%CHAPAR_CLICK_"
MARKER_END = "%%"
# Plainly not a real token: following a sample link opens the "invalid link" page.
SAMPLE_TOKEN = "sample-link-for-preview"  # noqa: S105 - not a secret

_MARKER = re.compile("(" + "|".join(re.escape(m) for m in ALL)
                     + "|" + re.escape(CLICK_MARKER_PREFIX) + "[0-9]+" + re.escape(MARKER_END) + ")")


class Personalizer:
    """Split a template once at its markers; fill it per recipient with one join."""

    def __init__(self, template: str) -> None:
        self.pieces: list[str] = _MARKER.split(template)
        # Odd positions are markers; even positions are literal text.

    def fill(self, values: Mapping[str, str]) -> str:
        """Each marker replaced by its value; a marker without one (an article's text that
        happens to look like a click marker) stays as it is, for the checks to find."""
        pieces = self.pieces[:]
        for i in range(1, len(pieces), 2):
            pieces[i] = values.get(pieces[i], pieces[i])
        return "".join(pieces)


def sample_personal_links(public_url: str) -> dict[str, str]:
    """The per-recipient links as a preview shows them: the real pages, a sample token.

    Nobody's subscription can be reached through them, so a preview (or a test send to
    staff) can be passed around without handing out anyone's unsubscribe link.
    """
    base = public_url.rstrip("/")
    return {UNSUBSCRIBE_URL: f"{base}/unsubscribe/{SAMPLE_TOKEN}",
            PREFERENCES_URL: f"{base}/preferences/{SAMPLE_TOKEN}"}


def with_sample_links(body: str, public_url: str) -> str:
    """A rendered body (HTML or text) as a reader sees it, personal links made samples."""
    return Personalizer(body).fill(sample_personal_links(public_url))
