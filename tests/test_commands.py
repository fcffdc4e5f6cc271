"""Commands that need the database say plainly, in English and Persian, when it cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from service.commands import EXIT_DATABASE_UNREACHABLE
from tests.conftest import TEST_SECRET
from tests.support.network import free_port


@pytest.mark.parametrize("args", [["status", "--once"], ["subscribers", "export"], ["ops", "watch"],
                                  ["ops", "pause", "1"], ["db", "upgrade"], ["serve"], ["beat"],
                                  ["worker"]])
def test_an_unreachable_database_is_one_plain_message_and_a_temporary_failure(
        args: list[str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: connection refused
    env = {"CHAPAR_ENVIRONMENT": "test", "CHAPAR_SECRET_KEY": TEST_SECRET,
           "CHAPAR_DATA_DIR": str(tmp_path),
           "CHAPAR_DATABASE_URL": f"postgresql+psycopg://chapar:secretpw@127.0.0.1:{port}/chapar"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == EXIT_DATABASE_UNREACHABLE, result.output
    assert result.stdout == ""
    assert f"the database at 127.0.0.1:{port} is unreachable" in result.stderr
    assert "Connection refused" in result.stderr  # the driver's own reason
    assert f"پایگاه داده در 127.0.0.1:{port} در دسترس نیست" in result.stderr
    assert "secretpw" not in result.stderr and "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
