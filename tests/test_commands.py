"""Commands that need the database say plainly, in English and Persian, when it cannot be reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from service.cli import main
from service.commands import EXIT_DATABASE_UNREACHABLE, LazyGroup
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


def test_every_lazy_subcommand_resolves_to_the_command_of_its_name() -> None:
    from service.digests.commands import digest

    subscribers = main.get_command(click.Context(main), "subscribers")
    for group in (main, digest, subscribers):
        assert isinstance(group, LazyGroup) and group.lazy
        context = click.Context(group)
        for name in group.lazy:
            command = group.get_command(context, name)
            assert command is not None and command.name == name, name
            assert name in group.list_commands(context)
    shown = CliRunner().invoke(main, ["digest", "--help"]).stdout
    assert all(f"  {name} " in shown for name in digest.lazy)


def test_a_command_imports_its_own_area_only() -> None:
    # In a fresh interpreter: this one has imported every area already.
    probe = (
        "import sys, click\n"
        "from service.cli import main\n"
        "context = click.Context(main)\n"
        "articles = main.get_command(context, 'articles')\n"
        "print(sorted(m for m in ('service.delivery.commands', 'service.ops.status', "
        "'service.digests.commands', 'service.articles.commands') if m in sys.modules))\n"
        "main.get_command(context, 'digest').get_command(context, 'send')\n"
        "print('service.delivery.commands' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[1])
    assert found.stdout.splitlines() == ["['service.articles.commands']", "True"]
