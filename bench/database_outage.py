"""How long a page takes to answer 503 while the database cannot be reached.

Two kinds of outage, both on 127.0.0.1 and both made here: a port where nothing listens
(the connection is refused at once) and a socket that accepts connections but never
answers (a hung server, or a host that swallows packets: the connect timeout decides).
It prints the time of each POST /subscribe, which must answer 503 every time.

    .venv/bin/python -m bench.database_outage [--requests 5] [--connect-timeout 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.runtime import Runtime
from service.settings import Settings
from service.web.app import create_app

SECRET = "bench-secret-key-that-is-long-enough-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def timings(database_url: str, folder: Path, requests: int, connect_timeout: int) -> list[float]:
    settings = Settings(environment="test", data_dir=folder, secret_key=SECRET,  # type: ignore[call-arg]
                        database_url=database_url, database_connect_timeout=connect_timeout,
                        redis_url="", broker_url="")
    rt = Runtime.from_settings(settings)
    seconds = []
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            for n in range(requests):
                start = time.perf_counter()
                response = client.post("/subscribe", data={"email": f"r{n}@example.com"})
                seconds.append(time.perf_counter() - start)
                assert response.status_code == 503, response.status_code
    finally:
        rt.close()
    return seconds


def report(label: str, seconds: list[float]) -> None:
    print(f"{label:<36} median {statistics.median(seconds):6.2f} s   "
          f"max {max(seconds):6.2f} s   ({len(seconds)} requests, all 503)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--connect-timeout", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as silent:
        refused = free_port()
        report("refused (nothing listens)", timings(
            f"postgresql+psycopg://chapar@127.0.0.1:{refused}/chapar", Path(tmp),
            args.requests, args.connect_timeout))
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        report(f"silent server (connect timeout {args.connect_timeout} s)", timings(
            f"postgresql+psycopg://chapar@127.0.0.1:{port}/chapar", Path(tmp),
            args.requests, args.connect_timeout))


if __name__ == "__main__":
    main()
