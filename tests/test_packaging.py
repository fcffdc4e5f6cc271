"""A non-editable install works on its own: templates, migrations and samples ship in the wheel,
and the data folder is the working directory's var/, never the interpreter's tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "service", "worker", "templates")


def run(*command: str | Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=300, check=False, env=env, cwd=cwd)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The built wheel installed into a fresh venv, offline.

    The wheel is built from a copy of the sources, so the checkout gets no build/ folder.
    The new venv borrows the dependencies from this one through a .pth line; .pth files
    inside that borrowed folder are not processed, so this checkout's editable install
    stays out and `service` comes from the wheel.
    """
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    wheels = base / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--quiet", "--wheel-dir", wheels, source)
    [wheel] = wheels.glob("chapar-*.whl")

    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--quiet", wheel)
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                         .stdout.strip())
    (site_packages / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    yield Installed(wheel, venv, site_packages)


def source_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_wheel_holds_every_file_of_the_package_and_the_email_templates(installed: Installed) -> None:
    """pyproject.toml lists the packages by name: a folder left out of the list fails here."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = set(wheel.namelist())
    expected = {f"service/{name}" for name in source_files(ROOT / "service")}
    expected |= {f"worker/{name}" for name in source_files(ROOT / "worker")}
    expected |= {f"service/email_templates/{name}" for name in source_files(ROOT / "templates" / "email")}
    assert expected - shipped == set()


def test_an_installed_chapar_builds_a_digest_from_any_working_directory(
        installed: Installed, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAPAR_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The sample articles carry fixed dates: let issue 1 reach back to them, however old.
    env["CHAPAR_DIGEST_MAX_LOOKBACK_DAYS"] = "36500"
    python, chapar = installed.venv / "bin" / "python", installed.venv / "bin" / "chapar"
    where = run(python, "-c", "import service; print(service.__file__)", env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(installed.site_packages)
    before = source_files(installed.site_packages)

    run(chapar, "db", "upgrade", env=env, cwd=tmp_path)
    sample_feed = installed.site_packages / "service" / "articles" / "sample" / "feed.xml"
    fetched = run(chapar, "articles", "fetch", sample_feed, env=env, cwd=tmp_path)
    assert "added 13" in fetched.stdout
    built = run(chapar, "digest", "build", env=env, cwd=tmp_path)
    assert "built draft issue 1 with 10 articles" in built.stdout
    shown = run(chapar, "digest", "preview", "1", env=env, cwd=tmp_path)

    data = tmp_path / "var"
    assert shown.stdout.split() == [str(data / "previews" / "issue-1.html"),
                                     str(data / "previews" / "issue-1.txt")]
    html = (data / "previews" / "issue-1.html").read_text(encoding="utf-8")
    assert 'dir="rtl"' in html and "خبرنامه" in html
    assert (data / "chapar.db").is_file() and (data / "secret_key").is_file()
    assert source_files(installed.site_packages) == before  # nothing written into the install
