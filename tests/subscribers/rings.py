"""Read the doorbells a test rang: the task messages waiting in a filesystem broker."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from service.settings import Settings


def rung(settings: Settings, task: str = "chapar.send_confirmation") -> list[list[object]]:
    """The argument lists of every waiting message for `task`.

    Roughly oldest first: kombu names the files by millisecond, so two rings within
    one millisecond may come back in either order.
    """
    folder = settings.broker_folder / "queue"
    if not folder.exists():
        return []
    found: list[list[object]] = []
    for path in sorted(Path(folder).glob("*.msg")):
        payload = json.loads(path.read_bytes())
        if payload["headers"].get("task") != task:
            continue
        body = json.loads(base64.b64decode(payload["body"]))
        found.append(list(body[0]))
    return found
