"""Real Chapar processes (Celery workers, beat) started for a test and stopped after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAPAR_")}
    env.update(settings.as_environment())
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChaparProcess:
    """A `chapar ...` subprocess whose output is kept for assertions and debugging."""

    def __init__(self, settings: Settings, args: Iterable[str], ready_marker: str | None,
                 name: str) -> None:
        self.name = name
        self.args = list(args)
        self.settings = settings
        self.ready_marker = ready_marker
        self.output: list[str] = []
        self._ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> ChaparProcess:
        self._ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *self.args],
            env=settings_env(self.settings), cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        if self.ready_marker and not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} not ready in {timeout}s:\n" + self.tail())
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if self.ready_marker and self.ready_marker in line:
                self._ready.set()

    def tail(self, lines: int = 60) -> str:
        return "".join(self.output[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool children."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_worker(settings: Settings, *, concurrency: int = 2, queues: str = "mail,send,default",
                 extra: Iterable[str] = (), name: str = "worker") -> ChaparProcess:
    hostname = f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"
    return ChaparProcess(
        settings,
        ["worker", "--concurrency", str(concurrency), "--queues", queues,
         f"--hostname={hostname}", "--without-gossip", "--without-mingle", *extra],
        ready_marker=" ready.", name=name,
    ).start()
