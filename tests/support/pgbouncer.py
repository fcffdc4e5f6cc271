"""A private PgBouncer in transaction mode in front of one test database.

Debian's `pgbouncer` (scripts/test installs it). It refuses to run as root, so as root it
is started with `-u postgres`; its folder is then made readable to that user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.network import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def pgbouncer_installed() -> bool:
    return Path(BINARY).is_file()


class PrivatePgBouncer:
    """pgbouncer on a free port; `pool_size` server connections shared by every client."""

    def __init__(self, database_url: str, *, pool_size: int = 2) -> None:
        self.target = make_url(database_url)
        self.port = free_port()
        self.pool_size = pool_size
        self.folder = Path(tempfile.mkdtemp(prefix="chapar-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The test database's URL, through the pooler."""
        return self.target.set(host="127.0.0.1", port=self.port).render_as_string(
            hide_password=False)

    def config(self) -> str:
        database = self.target.database
        user = self.target.username or "postgres"
        host = self.target.host or "127.0.0.1"
        port = self.target.port or 5432
        return "\n".join([
            "[databases]",
            f"{database} = host={host} port={port} dbname={database} user={user}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = any",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 100",
            f"pidfile = {self.folder / 'pgbouncer.pid'}",
            f"logfile = {self.folder / 'pgbouncer.log'}",
            "log_connections = 0",
            "log_disconnections = 0",
            "",
        ])

    def start(self) -> PrivatePgBouncer:
        path = self.folder / "pgbouncer.ini"
        path.write_text(self.config())
        command = [BINARY]
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            shutil.chown(path, user="postgres")
            command += ["-u", "postgres"]
        self.proc = subprocess.Popen([*command, str(path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("pgbouncer did not listen within 15 s")

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)
