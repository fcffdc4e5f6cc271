"""The fan-out's rows follow their issue and their reader, as foreign keys' actions would.

On PostgreSQL triggers stand in for the keys (migration 0023); these tests hold on
both backends, and the two races below, which only PostgreSQL's concurrent writers
can run, check the lock that keeps an erasure and a fan-out from missing each other.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import ledger
from service.delivery.models import Delivery
from service.digests.models import Issue
from service.runtime import Runtime
from service.subscribers import store
from service.subscribers.models import Subscriber
from tests.delivery.factories import NOW, add_subscribers, assert_counts_kept, make_issue
from tests.delivery.test_sweeper import started
from tests.support.databases import waits_for_a_lock
from tests.support.threads import in_thread

RETRY_FOR = timedelta(hours=48)


def reader_id(session: Session, email: str) -> int:
    return session.scalars(select(Subscriber.id).where(Subscriber.email == email)).one()


def ledger_readers(session: Session, issue_id: int) -> list[int | None]:
    return list(session.scalars(select(Delivery.subscriber_id)
                                .where(Delivery.issue_id == issue_id).order_by(Delivery.id)))


def test_deleting_an_issue_deletes_its_ledger_rows_and_their_counts(session: Session) -> None:
    kept, _ = started(session, 2, number=1)
    gone, _ = started(session, 3, number=2)
    session.execute(delete(Issue).where(Issue.id == gone))
    assert ledger_readers(session, gone) == []
    assert len(ledger_readers(session, kept)) == 2
    assert ledger.counts(session, gone)["queued"] == 0
    assert_counts_kept(session)


def test_an_erased_readers_rows_stay_and_name_nobody(session: Session) -> None:
    issue_id, _ = started(session, 3)
    first = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).first()
    assert first is not None
    assert store.erase(session, first, NOW)
    readers = ledger_readers(session, issue_id)
    assert len(readers) == 3 and readers[0] is None and None not in readers[1:]


def dangling(rt: Runtime) -> int:
    """Ledger rows naming a subscriber that does not exist."""
    with rt.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT count(*) FROM deliveries AS d WHERE d.subscriber_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM subscribers AS s WHERE s.id = d.subscriber_id)")).scalar_one())


def loaded(rt: Runtime) -> tuple[int, int, int]:
    """A draft issue and two confirmed readers, committed: the issue, the one to erase, the other."""
    with unit_of_work(rt.sessions) as session:
        add_subscribers(session, 2)
        return (make_issue(session).id, reader_id(session, "reader0@example.test"),
                reader_id(session, "reader1@example.test"))


def test_a_reader_erased_while_a_fan_out_is_uncommitted_is_anonymous_after_both(
        pg_runtime: Runtime) -> None:
    issue_id, reader, other = loaded(pg_runtime)
    with unit_of_work(pg_runtime.sessions) as fan_out:
        assert ledger.start_send(fan_out, issue_id, NOW, RETRY_FOR) == 2  # read the reader

        def erase() -> None:
            with unit_of_work(pg_runtime.sessions) as session:
                assert store.erase(session, reader, NOW)

        thread, errors = in_thread(erase)
        # the erasure waits for the fan-out's commit
        assert waits_for_a_lock(pg_runtime.engine, "advisory")
    thread.join(10)
    assert not thread.is_alive() and errors == []
    with pg_runtime.sessions() as session:
        readers = ledger_readers(session, issue_id)
    assert len(readers) == 2 and set(readers) == {None, other}
    assert dangling(pg_runtime) == 0


def test_a_fan_out_that_starts_while_an_erasure_is_uncommitted_leaves_the_reader_out(
        pg_runtime: Runtime) -> None:
    issue_id, reader, other = loaded(pg_runtime)
    with unit_of_work(pg_runtime.sessions) as erasing:
        assert store.erase(erasing, reader, NOW)

        def fan_out() -> None:
            with unit_of_work(pg_runtime.sessions) as session:
                assert ledger.start_send(session, issue_id, NOW, RETRY_FOR) == 1

        thread, errors = in_thread(fan_out)
        # the fan-out waits for the erasure's commit
        assert waits_for_a_lock(pg_runtime.engine, "advisory")
    thread.join(10)
    assert not thread.is_alive() and errors == []
    with pg_runtime.sessions() as session:
        assert ledger_readers(session, issue_id) == [other]
    assert dangling(pg_runtime) == 0
