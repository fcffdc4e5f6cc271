"""The embedded setup: a local SMTP capture and one command that runs every process."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import logging
import os
import signal
import subprocess
import sys
import time
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.settings import Settings


def embedded_settings() -> Settings:
    """The settings `chapar up` runs with: development, unless CHAPAR_ENVIRONMENT (or .env) says.

    The embedded setup serves plain http on 127.0.0.1 with a local mail capture: a
    development setup, while a bare deployment is production by default.
    """
    settings = Settings()
    if "environment" in settings.model_fields_set:
        return settings
    return Settings(environment="development")


class CaptureHandler:
    """Keeps every message it receives as a .eml file the user can open."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.count += 1
        subject = BytesParser(policy=email.policy.default).parsebytes(data, headersonly=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{os.getpid()}-{self.count:06d}.eml"
        header = f"X-Chapar-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        (self.folder / name).write_bytes(header + data)
        print(f"captured {name}: {subject['Subject']!s} -> {', '.join(envelope.rcpt_tos)}",
              flush=True)
        return "250 OK captured"


def run_capture(folder: Path, host: str, port: int) -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    controller = Controller(CaptureHandler(folder), hostname=host, port=port,
                            decode_data=False, enable_SMTPUTF8=True,
                            data_size_limit=25 * 1024 * 1024)
    controller.start()
    print(f"SMTP capture on {host}:{port}, saving to {folder}", flush=True)
    try:
        asyncio.run(_forever())
    finally:
        controller.stop()


async def _forever() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_all(commands: list[list[str]], env: dict[str, Any] | None = None) -> int:
    """Start each command; when one exits or on Ctrl-C, stop them all."""
    # Each child leads its own process group, so stopping it also stops what it forked
    # (the Celery worker's pool processes).
    procs = [subprocess.Popen(cmd, env=env, start_new_session=True) for cmd in commands]  # noqa: S603
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and Ctrl-C end the same way
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the leader stops its own children cleanly
        deadline = time.monotonic() + 15
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(p, signal.SIGKILL)  # whatever of the group is still there
    failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def chapar_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]
