"""Which workers are alive, what they run, and which stopped answering (lost).

Each worker's main process writes a heartbeat row every CHAPAR_OPS_HEARTBEAT_SECONDS
(host, pid, pool size) and marks it stopped on a clean shutdown. A row whose
heartbeat is older than CHAPAR_OPS_WORKER_LOST_SECONDS without a clean stop is a
lost worker (killed, its host gone). The broker adds what the rows cannot know: the
tasks each live worker runs now (Celery's `inspect active`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.db import dialect_insert, unit_of_work
from service.ops import incidents
from service.ops.models import WorkerSeen
from service.ops.outages import skipped_while_unreachable
from service.ops.queues import QUEUES

if TYPE_CHECKING:
    from celery import Celery

    from service.runtime import Runtime

log = logging.getLogger(__name__)
SHOWN_FOR = timedelta(hours=24)  # stopped and lost workers stay on the console this long

ALIVE, LOST, STOPPED = "alive", "lost", "stopped"


@dataclass(frozen=True)
class WorkerState:
    name: str
    state: str  # alive | lost | stopped
    host: str = ""
    pool: int | None = None
    started_at: datetime | None = None
    last_seen_at: datetime | None = None
    draining: bool = False
    tasks: list[str] = field(default_factory=list)


def beat(session: Session, name: str, pool: int, now: datetime) -> None:
    """The heartbeat: this worker is alive at `now`."""
    statement = dialect_insert(session, WorkerSeen).values(
        name=name, host=socket.gethostname(), pid=os.getpid(), pool=pool, started_at=now,
        last_seen_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[WorkerSeen.name],
        set_={"last_seen_at": now, "pool": pool, "pid": statement.excluded.pid,
              "host": statement.excluded.host, "stopped_at": None, "lost_at": None},
    ))


def stopped(session: Session, name: str, now: datetime) -> None:
    session.execute(update(WorkerSeen).where(WorkerSeen.name == name)
                    .values(stopped_at=now, last_seen_at=now))


def active_tasks(celery: Celery, timeout: float = 1.0) -> dict[str, list[str]] | None:
    """Per live worker, the tasks it runs now; None when the broker cannot be asked."""
    if str(celery.conf.broker_url or "").startswith("filesystem://"):
        return None  # no broadcast on the filesystem transport
    try:
        replies = celery.control.inspect(timeout=timeout).active() or {}
    except Exception:
        return None
    return {name: [describe_task(t) for t in tasks or []] for name, tasks in replies.items()}


def describe_task(task: Any) -> str:
    args = task.get("args") or []
    name = str(task.get("name", "?")).removeprefix("chapar.")
    return f"{name}({', '.join(str(a) for a in args)})"


def states(session: Session, replies: dict[str, list[str]] | None, now: datetime,
           lost_after: timedelta) -> list[WorkerState]:
    """Every worker seen lately, alive ones first."""
    rows = session.scalars(select(WorkerSeen).where(
        or_(WorkerSeen.stopped_at.is_(None), WorkerSeen.stopped_at > now - SHOWN_FOR),
        WorkerSeen.last_seen_at > now - SHOWN_FOR,
    ).order_by(WorkerSeen.name)).all()
    found: list[WorkerState] = []
    seen = set()
    for row in rows:
        seen.add(row.name)
        fresh = now - row.last_seen_at <= lost_after
        if (replies is not None and row.name in replies) or (row.stopped_at is None and fresh):
            state = ALIVE
        else:
            state = STOPPED if row.stopped_at is not None else LOST
        found.append(WorkerState(row.name, state, row.host, row.pool, row.started_at,
                                 row.last_seen_at, row.draining_at is not None and state == ALIVE,
                                 (replies or {}).get(row.name, [])))
    # A worker that answers but writes no heartbeat (an older version): alive, little known.
    found.extend(WorkerState(name, ALIVE, tasks=tasks)
                 for name, tasks in (replies or {}).items() if name not in seen)
    order = {ALIVE: 0, LOST: 1, STOPPED: 2}
    return sorted(found, key=lambda w: (order[w.state], w.name))


def record_losses(session: Session, found: list[WorkerState], now: datetime) -> list[str]:
    """Log each newly lost worker once in the incident log; returns their names."""
    lost = [w.name for w in found if w.state == LOST]
    if not lost:
        return []
    fresh = list(session.scalars(select(WorkerSeen.name).where(
        WorkerSeen.name.in_(lost), WorkerSeen.lost_at.is_(None))))
    for name in fresh:
        log.warning("worker %s lost: no heartbeat and no clean shutdown", name)
        session.execute(update(WorkerSeen).where(WorkerSeen.name == name).values(lost_at=now))
        incidents.record(session, incidents.WORKER_LOST, now, "no heartbeat and no clean shutdown",
                         subject=name)
    return fresh


def drain(rt: Runtime, name: str, now: datetime) -> None:
    """Ask one worker to take no new work (it finishes what it runs); ops restart it later."""
    for queue in QUEUES:
        rt.celery.control.cancel_consumer(queue, destination=[name])
    with unit_of_work(rt.sessions) as session:
        session.execute(update(WorkerSeen).where(WorkerSeen.name == name).values(draining_at=now))


class Heartbeat:
    """A thread in the worker's main process that writes the heartbeat until it stops."""

    def __init__(self, rt: Runtime, name: str, pool: int) -> None:
        self.rt, self.name, self.pool = rt, name, pool
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chapar-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            # The database may be down for a while: keep trying at the same pace, and say so
            # once per outage (the tracker's warning) rather than every few seconds.
            try:
                with skipped_while_unreachable(self.rt.database_outages), \
                        unit_of_work(self.rt.sessions) as session:
                    beat(session, self.name, self.pool, utcnow())
            except Exception as exc:
                log.warning("heartbeat not written: %s", exc)
            self._stop.wait(self.rt.settings.ops_heartbeat_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with unit_of_work(self.rt.sessions) as session:
                stopped(session, self.name, utcnow())
        except Exception as exc:
            log.warning("clean shutdown not recorded: %s", exc)
