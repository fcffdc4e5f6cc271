"""Commands on a database that was never upgraded, or lags behind: one line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from service.cli import main
from service.migrations import upgrade
from tests.conftest import make_settings

COMMANDS = [
    ["articles", "list"],
    ["articles", "fetch", "feed.xml"],
    ["digest", "build"],
    ["digest", "preview", "1"],
    ["digest", "send", "1"],
    ["digest", "retry-failed", "1"],
    ["status", "--once"],
    ["subscribers", "export"],
]


def chapar(database_url: str, tmp_path: Path, *args: str) -> Result:
    settings = make_settings(tmp_path, database_url=database_url)
    return CliRunner().invoke(main, list(args), env=settings.as_environment())


def assert_one_line_refusal(result: Result, words: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert words in lines[0] and 'run "chapar db upgrade"' in lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_on_a_database_never_set_up_says_what_to_run(
        tmp_path: Path, command: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/never-upgraded.db"
    assert_one_line_refusal(chapar(url, tmp_path, *command), "not set up")


def test_a_database_behind_the_newest_migration_is_refused_until_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/behind.db"
    upgrade(url, "0003")
    assert_one_line_refusal(chapar(url, tmp_path, "articles", "list"), "behind")

    upgraded = chapar(url, tmp_path, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    listed = chapar(url, tmp_path, "articles", "list")
    assert listed.exit_code == 0, listed.output


def test_a_database_from_a_newer_chapar_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/newer.db"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = chapar(url, tmp_path, "articles", "list")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "newer version of Chapar" in result.output and len(result.output.strip().splitlines()) == 1
