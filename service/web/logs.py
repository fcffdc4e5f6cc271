"""Web logs without the tokens in signed links.

A token in /confirm/<t>, /unsubscribe/<t> or /preferences/<t>/... opens someone's
subscription and the lasting ones never expire, so no log line may carry one:
uvicorn's access and error logs and Chapar's own lines all pass through RedactTokens.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from service.tokens import Purpose

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# CHAPAR_LOG_FORMAT=json: one JSON object per line, with the ids bound by `log_ids`.
JSON_FORMATTER = "pythonjsonlogger.json.JsonFormatter"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_ids: ContextVar[dict[str, int] | None] = ContextVar("chapar_log_ids", default=None)
REDACTED = "[token]"
# Every signed link is /<purpose>/<token>[/...]; the token is one path segment.
PURPOSES = "|".join(re.escape(purpose.value) for purpose in Purpose)
SIGNED_PATH = re.compile(rf"(/(?:{PURPOSES})/)[^/?#\s\"']+")


def redact_tokens(text: str) -> str:
    """`text` with the token segment of every signed path replaced."""
    return SIGNED_PATH.sub(rf"\g<1>{REDACTED}", text)


def _redacted(value: object) -> object:
    return redact_tokens(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Redact tokens in a record's message, its arguments and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        # uvicorn's access formatter reads the arguments one by one, so they stay a tuple.
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_tokens(record.exc_text)
        return True


@contextmanager
def log_ids(**ids: int) -> Iterator[None]:
    """Every line logged inside carries these ids (issue_id, delivery_id) as JSON fields."""
    token = _ids.set({**(_ids.get() or {}), **ids})
    try:
        yield
    finally:
        _ids.reset(token)


class ContextIds(logging.Filter):
    """Copy the ids bound by `log_ids` onto each record (a record's own extra= wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_ids.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                     "name": "logger"})


def configure_root(level: int, log_format: str) -> None:
    """The command-line processes' logging (worker, beat, commands): text or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(LOG_FORMAT))
    handler.addFilter(ContextIds())
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def log_config(level: int = logging.INFO, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration, plus Chapar's lines, every handler redacting tokens."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": f"{__name__}.RedactTokens"},
                         "context_ids": {"()": f"{__name__}.ContextIds"}}
    config["formatters"]["chapar"] = {"format": LOG_FORMAT}
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": JSON_FORMATTER, "fmt": JSON_FIELDS,
                                          "rename_fields": {"asctime": "time", "levelname": "level",
                                                            "name": "logger"}}
    config["handlers"]["chapar"] = {"class": "logging.StreamHandler", "formatter": "chapar",
                                    "stream": "ext://sys.stderr"}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_tokens", "context_ids"]
    config["root"] = {"handlers": ["chapar"], "level": logging.getLevelName(level)}
    return config
