"""CHAPAR_LOG_FORMAT=json: one JSON object per line, with the issue id where it applies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from service.delivery import sender
from service.web.logs import configure_root, log_config, log_ids
from tests.conftest import make_settings
from tests.support.processes import ChaparProcess


def test_lines_are_json_objects_carrying_the_bound_ids(capsys: object) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_root(logging.INFO, "json")
        with log_ids(issue_id=7):
            logging.getLogger("service.delivery.sender").warning("example.org answered 421")
        logging.getLogger("service.x").info("plain")
        err = capsys.readouterr().err.strip().splitlines()  # type: ignore[attr-defined]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    first, second = (json.loads(line) for line in err[-2:])
    assert first["message"] == "example.org answered 421" and first["issue_id"] == 7
    assert first["level"] == "WARNING" and first["logger"] == sender.__name__ and first["time"]
    assert "issue_id" not in second


def test_the_web_log_config_uses_json_for_every_formatter() -> None:
    config = log_config(logging.INFO, "json")
    assert {f.get("()") for f in config["formatters"].values()} == {
        "pythonjsonlogger.json.JsonFormatter"}
    assert all("context_ids" in h["filters"] for h in config["handlers"].values())


def test_a_worker_process_logs_json_lines(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, log_format="json")
    worker = ChaparProcess(settings, ["worker", "--concurrency", "1", "--pool", "solo"],
                           ready_marker="ready", name="json-worker").start()
    try:
        lines = [line for line in worker.output if line.startswith("{")]
    finally:
        worker.stop()
    assert lines, worker.tail()
    parsed = [json.loads(line) for line in lines]
    assert any("ready" in p["message"] for p in parsed)
