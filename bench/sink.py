"""Postfix's smtp-sink on 127.0.0.1, fetched from Debian's package without installing Postfix.

smtp-sink accepts and discards mail as fast as a C event loop can, advertises
PIPELINING, and with -c keeps a running count ("sess=.. quit=.. mesg=..") that tells
us how many messages really arrived.
"""

from __future__ import annotations

import glob
import os
import pty
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / ".tools"
SINK = TOOLS / "postfix" / "usr" / "sbin" / "smtp-sink"
LIBS = TOOLS / "postfix" / "usr" / "lib" / "postfix"
_COUNT = re.compile(rb"mesg=(\d+)")


def ensure_smtp_sink() -> Path:
    """bench/.tools/postfix/usr/sbin/smtp-sink, downloaded with apt and unpacked on first use."""
    if SINK.exists():
        return SINK
    TOOLS.mkdir(parents=True, exist_ok=True)
    download = TOOLS / "download"
    download.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "download", "postfix"], cwd=download, check=True,
                   stdout=subprocess.DEVNULL)
    [package] = glob.glob(str(download / "postfix_*.deb"))
    subprocess.run(["dpkg-deb", "-x", package, str(TOOLS / "postfix")], check=True)
    shutil.rmtree(download)
    return SINK


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpSink:
    """One smtp-sink process; `received` is its own count of completed DATA commands."""

    def __init__(self, port: int | None = None, backlog: int = 1000) -> None:
        self.port = port or free_port()
        self.backlog = backlog
        self.proc: subprocess.Popen[bytes] | None = None
        self._received = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        binary = ensure_smtp_sink()
        # smtp-sink refuses to run as root unless told which user to become.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        env = dict(os.environ, LD_LIBRARY_PATH=str(LIBS))
        # A terminal, because smtp-sink buffers its counter when writing to a pipe.
        controller, terminal = pty.openpty()
        self.proc = subprocess.Popen(
            [str(binary), "-c", *user, f"127.0.0.1:{self.port}", str(self.backlog)],
            env=env, stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL,
        )
        os.close(terminal)
        threading.Thread(target=self._count, args=(controller,), daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start listening")

    def _count(self, controller: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the sink exited and the terminal closed
                break
            if not chunk:
                break
            pending += chunk
            found = _COUNT.findall(pending)
            if found:
                with self._lock:
                    self._received = int(found[-1])
            pending = pending[-64:]
        os.close(controller)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def received(self) -> int:
        with self._lock:
            return self._received

    def wait_for(self, count: int, timeout: float = 10.0) -> int:
        """The count once it reaches `count` (the counter trails the last session a little)."""
        deadline = time.monotonic() + timeout
        while self.received < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
