"""A unit of work's counters and incidents are on record once, however often it runs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import utcnow
from service.ops import writers
from service.ops.models import WriterMark


def test_a_unit_number_is_first_once_and_numbers_only_move_forward(session: Session) -> None:
    now = utcnow()
    assert writers.first_time(session, "a", 1, now)
    assert not writers.first_time(session, "a", 1, now)  # run again: its commit landed
    assert writers.first_time(session, "a", 3, now)  # unit 2 never committed: skipped
    assert not writers.first_time(session, "a", 2, now)
    assert writers.first_time(session, "b", 1, now)  # every process numbers its own
    assert session.scalar(select(WriterMark.unit).where(WriterMark.writer == "a")) == 3


def test_writers_silent_for_a_day_are_pruned(session: Session) -> None:
    now = utcnow()
    writers.first_time(session, "gone", 7, now - writers.KEEP - timedelta(minutes=1))
    writers.first_time(session, "alive", 7, now - timedelta(minutes=1))
    assert writers.prune(session, now) == 1
    assert list(session.scalars(select(WriterMark.writer))) == ["alive"]
