"""A database of its own per migration test, migrated to head, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import postgres_database, sqlite_database


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        with sqlite_database(str(tmp_path)) as url:
            yield url
    else:
        with postgres_database() as url:
            yield url
