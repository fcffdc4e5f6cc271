"""What the broker holds: messages waiting per queue, and which workers answer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from service.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

QUEUES = ("mail", "send", "default")


def queue_depths(settings: Settings, celery: Celery) -> dict[str, int | None]:
    """Messages waiting per queue (None when the broker cannot be read)."""
    url = settings.effective_broker_url
    if url.startswith("filesystem://"):
        return filesystem_depths(settings.broker_folder / "queue")
    depths: dict[str, int | None] = {}
    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in QUEUES:
                # A channel per queue: RabbitMQ closes the channel on a passive declare of a
                # queue that does not exist, which would blank every queue read after it.
                with connection.channel() as channel:
                    try:
                        declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                        depths[queue] = int(declared.message_count)
                    except Exception:
                        depths[queue] = 0  # a queue nobody declared yet holds nothing
    except Exception:
        return dict.fromkeys(QUEUES)
    return depths


def filesystem_depths(folder: Path) -> dict[str, int | None]:
    """kombu's filesystem transport writes one file per message, `<id>.<queue>.msg`."""
    depths: dict[str, int | None] = dict.fromkeys(QUEUES, 0)
    if not folder.is_dir():
        return depths
    for path in folder.glob("*.msg"):
        parts = path.name.split(".")
        queue = parts[-2] if len(parts) >= 3 else "default"
        depths[queue] = (depths.get(queue) or 0) + 1
    return depths

