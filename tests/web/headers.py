"""Reading the security headers of a response."""

from __future__ import annotations

from collections.abc import Mapping


def csp_directives(headers: Mapping[str, str]) -> dict[str, str]:
    """The Content-Security-Policy as {directive: its sources}."""
    policy = headers["content-security-policy"]
    return {name: sources.strip() for name, _, sources in
            (d.strip().partition(" ") for d in policy.split(";") if d.strip())}
