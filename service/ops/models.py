"""Ops tables: the incident log, the last run of each periodic job, the workers seen, the counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class Incident(Base):
    """Something an ops person may need to know later: kept across restarts, pruned by age."""

    __tablename__ = "ops_incidents"
    __table_args__ = (Index("ix_ops_incidents_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))  # see incidents.KINDS
    subject: Mapped[str] = mapped_column(String(320), default="")  # a domain, a worker, an issue
    issue_id: Mapped[int | None]
    detail: Mapped[str] = mapped_column(Text, default="")


class Mark(Base):
    """The last run of something periodic (beat tick, sweeper, feed, bounce poll, an alert sent).

    `failing_since` keeps when the current run of failures began; a success clears it.
    """

    __tablename__ = "ops_marks"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None]


class WorkerSeen(Base):
    """A Celery worker as it last reported itself; one that stops reporting is lost."""

    __tablename__ = "ops_workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # Celery's node name
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    pool: Mapped[int]  # pool processes
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]  # a clean shutdown
    lost_at: Mapped[datetime | None]  # when the watcher recorded it lost (once)
    draining_at: Mapped[datetime | None]  # ops asked it to take no new work


class Counter(Base):
    """A Prometheus counter kept in the database, so every process on every host adds to one.

    `labels` is the label set in Prometheus text form (`class="2",code="250"`).
    """

    __tablename__ = "ops_counters"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    labels: Mapped[str] = mapped_column(String(200), primary_key=True, default="")
    value: Mapped[float] = mapped_column(default=0.0)


class WriterMark(Base):
    """How far one sending process's counters and incidents are on record.

    A unit of work that adds to the counters or the incident log moves its process's
    row to the unit's number, in the same transaction (`service.ops.writers`). Run
    again because its commit's reply was lost although the commit landed, it finds
    its number here and adds nothing twice. Rows not written for a day are pruned.
    """

    __tablename__ = "ops_writers"

    writer: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
