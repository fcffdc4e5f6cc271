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

_MARKER = re.compile("(" + "|".join(re.escape(m) for m in ALL) + ")")


class Personalizer:
    """Split a template once at its markers; fill it per recipient with one join."""

    def __init__(self, template: str) -> None:
        self.pieces: list[str] = _MARKER.split(template)
        # Odd positions are markers; even positions are literal text.

    def fill(self, values: Mapping[str, str]) -> str:
        pieces = self.pieces[:]
        for i in range(1, len(pieces), 2):
            pieces[i] = values[pieces[i]]
        return "".join(pieces)
