"""Claims are leases: a worker writes outcomes only for rows it still holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from service.db import unit_of_work
from service.delivery import control, ledger
from service.delivery.models import Delivery, DeliveryClaim, DeliveryStatus
from service.digests.models import Issue, IssueStatus
from service.runtime import Runtime
from tests.delivery.factories import (
    NOW,
    assert_counts_kept,
    assert_only_waiting_rows_have_a_next_attempt,
)
from tests.delivery.test_sweeper import claim, row, started

LEASE = timedelta(minutes=5)


def test_a_slow_worker_cannot_overwrite_a_row_another_worker_took_and_sent(
        session: Session) -> None:
    issue_id, ids = started(session, 1)
    slow = ledger.claim_batch(session, issue_id, "slow", NOW, 10, LEASE)
    assert [r.delivery_id for r in slow] == ids
    later = NOW + LEASE + timedelta(seconds=1)  # the slow worker's lease ran out
    assert ledger.take_back(session, later, resend_uncertain=True) == ({}, {issue_id: 1})
    fast = ledger.claim_batch(session, issue_id, "fast", later, 10, LEASE)
    assert [r.delivery_id for r in fast] == ids
    assert ledger.mark_sending(session, ids, "fast", later, LEASE) == set(ids)
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "fast",
                           later, 60, resend_uncertain=True)
    # The slow worker reaches the row and, say, finds its domain paused: it must not
    # set a sent row back to deferred (the resend would be an unrecorded duplicate).
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.DEFERRED, 421, "paused")],
                           "slow", later, 60, resend_uncertain=True)
    assert row(session, ids[0]).status is DeliveryStatus.SENT
    assert ledger.finish_if_done(session, issue_id, later)


def test_a_renewal_extends_only_a_lease_that_still_holds(session: Session) -> None:
    issue_id, ids = started(session, 3)
    short = timedelta(seconds=20)
    assert len(ledger.claim_batch(session, issue_id, "w", NOW, 10, short)) == 3
    ledger.mark_sending(session, ids[:1], "w", NOW, short)
    later = NOW + timedelta(seconds=15)
    assert ledger.renew_claim(session, "w", later, short) == 1
    assert claim(session, "w").lease_until == later + short
    assert ledger.renew_claim(session, "someone else", later, short) == 0
    # Once it has run out the lease is not revived: the sweeper or a claim may act on it.
    gone = later + short + timedelta(seconds=1)
    assert ledger.renew_claim(session, "w", gone, short) == 0
    assert ledger.mark_sending(session, ids[1:], "w", gone, short) == set()
    # The recovery gives its rows back: the unsent ones are due again.
    assert ledger.take_back(session, gone, resend_uncertain=False) == ({issue_id: 1}, {issue_id: 2})
    assert len(ledger.claim_batch(session, issue_id, "v", gone, 10, short)) == 2


def test_a_chunk_transaction_run_twice_changes_nothing_the_second_time(session: Session) -> None:
    # A commit whose reply a dropped connection lost is run again by the worker.
    issue_id, ids = started(session, 2)
    ledger.claim_batch(session, issue_id, "w", NOW, 10, LEASE)
    assert ledger.mark_sending(session, ids, "w", NOW, LEASE) == set(ids)
    assert ledger.mark_sending(session, ids, "w", NOW, LEASE) == set(ids)  # still ours
    assert row(session, ids[0]).attempts == 1
    outcomes = [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250),
                ledger.Outcome(ids[1], DeliveryStatus.UNCERTAIN, None, "dropped after the dot")]
    for _ in range(2):
        ledger.record_outcomes(session, outcomes, "w", NOW, 60, resend_uncertain=True)
    assert row(session, ids[0]).status is DeliveryStatus.SENT
    assert row(session, ids[1]).status is DeliveryStatus.DEFERRED
    assert row(session, ids[1]).uncertain_count == 1  # counted once


def test_a_claim_run_again_gives_back_what_its_lost_run_claimed(session: Session) -> None:
    issue_id, ids = started(session, 4)
    assert len(ledger.claim_batch(session, issue_id, "lost", NOW, 3, LEASE)) == 3
    ledger.mark_sending(session, ids[:1], "lost", NOW, LEASE)  # not a claim's: left alone
    assert len(ledger.claim_batch(session, issue_id, "other", NOW, 10, LEASE)) == 1
    assert ledger.release_claimant(session, issue_id, "lost", NOW) == 2
    assert [row(session, i).worker for i in ids] == ["lost", None, None, None]
    assert claim(session, "other").ids == ids[3:]
    assert row(session, ids[0]).status is DeliveryStatus.SENDING
    assert claim(session, "lost").ids == ids[:3]  # kept: a row of it is `sending`
    again = ledger.claim_batch(session, issue_id, "lost", NOW, 10, LEASE)
    assert sorted(r.delivery_id for r in again) == ids[1:3]


def test_outcomes_that_arrive_after_the_sweeper_settled_the_row_keep_its_record(
        session: Session) -> None:
    issue_id, ids = started(session, 1)
    ledger.claim_batch(session, issue_id, "w", NOW, 10, LEASE)
    ledger.mark_sending(session, ids, "w", NOW, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    assert ledger.expire_leases(session, later, resend_uncertain=False) == 1
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "w",
                           later, 60, resend_uncertain=False)
    settled = row(session, ids[0])
    assert settled.status is DeliveryStatus.UNCERTAIN and settled.uncertain_count == 1


def test_leases_counts_held_sending_and_expired_rows(session: Session) -> None:
    issue_id, ids = started(session, 4)
    short = timedelta(seconds=20)
    ledger.claim_batch(session, issue_id, "w", NOW, 3, short)
    ledger.mark_sending(session, ids[:1], "w", NOW, short)
    found = ledger.leases(session, NOW + timedelta(seconds=5))
    assert (found.held, found.sending, found.expired) == (3, 1, 0)
    found = ledger.leases(session, NOW + timedelta(seconds=25))
    assert (found.held, found.expired) == (0, 3)
    assert found.oldest_expired_at == NOW + short


def test_one_statement_chunk_records_the_sent_rows_and_marks_the_next_as_the_two_steps_do(
        session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        with pytest.raises(ValueError, match="PostgreSQL"):
            ledger.record_sent_and_mark(session.connection(), [], [1], "w", NOW, LEASE)
        return
    issue_id, ids = started(session, 5)
    now = ledger.database_now(session)
    ledger.claim_batch(session, issue_id, "w", now, 4, LEASE)
    first, second = ids[:2], ids[2:4]
    assert ledger.mark_sending(session, first, "w", None, LEASE) == set(first)
    connection = session.connection()
    for _ in range(2):  # run again (a reply lost with the connection): same effect
        marked = ledger.record_sent_and_mark(connection, first, second, "w", now, LEASE)
        assert marked == set(second)
    for i in first:
        sent = row(session, i)
        assert (sent.status, sent.sent_at, sent.last_code) == (DeliveryStatus.SENT, now, 250)
    for i in second:
        assert (row(session, i).status, row(session, i).attempts) == (DeliveryStatus.SENDING, 1)
    assert claim(session, "w").lease_until == now + LEASE  # extended, on the database's clock
    # A row this worker does not hold (ids[4] is unclaimed; another claimant's name)
    # is neither marked nor recorded.
    assert ledger.record_sent_and_mark(connection, [ids[4]], [ids[4]], "w", now, LEASE) == set()
    assert row(session, ids[4]).status is DeliveryStatus.QUEUED
    assert ledger.record_sent_and_mark(connection, second, [], "someone else", now, LEASE) == set()
    assert row(session, second[0]).status is DeliveryStatus.SENDING


def test_one_statement_batch_end_records_the_sent_rows_and_ends_the_claim_as_the_steps_do(
        session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        with pytest.raises(ValueError, match="PostgreSQL"):
            ledger.record_sent_and_end_claim(session.connection(), [1], "w", NOW)
        return
    assert ledger.bigints([3, 1, 2]) == "{3,1,2}" and ledger.bigints([]) == "{}"
    issue_id, ids = started(session, 4)
    now = ledger.database_now(session)
    ledger.claim_batch(session, issue_id, "w", now, 4, LEASE)
    assert ledger.mark_sending(session, ids, "w", None, LEASE) == set(ids)
    connection = session.connection()
    # A row of the claim still `sending` (its outcome not written) keeps the claim, so
    # the recovery finds it; the rows recorded in the same statement do not count.
    assert not ledger.record_sent_and_end_claim(connection, ids[:3], "w", now)
    assert [row(session, i).status for i in ids] == [DeliveryStatus.SENT] * 3 + [
        DeliveryStatus.SENDING]
    assert claim(session, "w") is not None
    assert ledger.record_sent_and_end_claim(connection, ids[3:], "w", now)
    assert session.scalar(select(DeliveryClaim).where(DeliveryClaim.worker == "w")) is None
    # Run again (a reply lost with the connection): nothing more changes.
    assert not ledger.record_sent_and_end_claim(connection, ids[3:], "w", now)
    assert (row(session, ids[3]).status, row(session, ids[3]).sent_at) == (DeliveryStatus.SENT, now)
    assert_only_waiting_rows_have_a_next_attempt(session)


def test_one_statement_chunk_marks_nothing_once_the_issue_is_paused(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("one statement per chunk is PostgreSQL's")
    issue_id, ids = started(session, 2)
    now = ledger.database_now(session)
    ledger.claim_batch(session, issue_id, "w", now, 2, LEASE)
    ledger.mark_sending(session, ids[:1], "w", None, LEASE)
    session.execute(update(Issue).where(Issue.id == issue_id).values(status=IssueStatus.PAUSED))
    assert ledger.record_sent_and_mark(session.connection(), ids[:1], ids[1:], "w", now,
                                       LEASE) == set()
    assert row(session, ids[0]).status is DeliveryStatus.SENT  # what went out is on record
    assert row(session, ids[1]).status is DeliveryStatus.QUEUED


def test_a_claim_reads_only_the_rows_it_takes_whatever_the_table_size(session: Session) -> None:
    # On a table of a few thousand rows PostgreSQL's planner preferred hashing the whole
    # deliveries and subscribers tables on every claim to 500 index lookups: 18 ms a
    # claim at 20,000 rows. The claim looks its readers up by key and updates by key.
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    sent, _ids = started(session, 3000, number=1)  # an issue sent before: 3,000 more rows
    session.execute(update(Delivery).where(Delivery.issue_id == sent).values(status="sent"))
    session.execute(update(Issue).where(Issue.id == sent).values(status=IssueStatus.SENT))
    issue_id, _ids = started(session, 3000, number=2)
    session.execute(text("ANALYZE deliveries"))
    session.execute(text("ANALYZE subscribers"))
    plan = "\n".join(row[0] for row in session.connection().exec_driver_sql(
        "EXPLAIN " + ledger._CLAIM,
        {"issue": issue_id, "worker": "w", "now": NOW, "size": 500, "lease": LEASE}))
    assert "Seq Scan on subscribers" not in plan, plan
    assert "Index Scan using pk_subscribers" in plan, plan
    # Fresh rows in the unique index's order after the cursor, rows due again through
    # their own index, rows written (none here) by key.
    assert "Index Scan using uq_deliveries_issue_id_subscriber_id" in plan, plan
    # ... starting at the cursor: an `issue_id =` beside the row comparison made the
    # btree start at the issue's first row and step past every row claimed before.
    fresh = plan.split("Index Scan using uq_deliveries_issue_id_subscriber_id")[1]
    assert "Index Cond: ((ROW(issue_id, subscriber_id) > ROW(" in fresh.splitlines()[1], plan
    assert "(issue_id = " not in fresh.splitlines()[1], plan
    assert "Index Scan using ix_deliveries_due_again" in plan, plan
    assert "Index Cond: (id = ANY" in plan, plan
    assert len(ledger.claim_in_one_statement(session.connection(), issue_id, "w", NOW, 500,
                                             LEASE)) == 500


def test_a_send_adds_no_entry_to_the_index_of_rows_due_again(session: Session) -> None:
    # Each of a message's row versions (fan-out, claimed, sending, sent) used to add an
    # entry to a (status, next_attempt_at) index: without it the ledger's statements cost
    # PostgreSQL 49-56 us a message instead of 62-76 (bench/README.md, seventh round).
    # Only rows given back or deferred have an entry in its successor.
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("index sizes are PostgreSQL's")
    issue_id, ids = started(session, 3000)
    sent = ids[:-1]
    assert len(ledger.claim_in_one_statement(session.connection(), issue_id, "w", NOW, 3000,
                                             LEASE)) == 3000
    ledger.mark_sending(session, ids, "w", NOW, LEASE)
    ledger.record_sent_and_mark(session.connection(), sent, [], "w", NOW, LEASE)
    ledger.record_outcomes(session, [ledger.Outcome(ids[-1], DeliveryStatus.DEFERRED, 451, "later")],
                           "w", NOW, 60, resend_uncertain=True)

    def pages() -> int:
        return int(session.scalar(text("SELECT pg_relation_size('ix_deliveries_due_again')"))
                   or 0) // 8192

    assert pages() <= 2, pages()  # the metapage and one leaf: 9,000 row versions, one entry
    session.execute(text("ANALYZE deliveries"))  # as autovacuum keeps it: few rows wait
    fail_after = session.connection().exec_driver_sql("EXPLAIN SELECT id FROM deliveries"
        " WHERE status = 'deferred' AND next_attempt_at IS NOT NULL AND give_up_at < now()")
    assert "ix_deliveries_due_again" in "\n".join(row[0] for row in fail_after)


def test_a_first_claim_writes_no_ledger_row(session: Session) -> None:
    # Fresh rows are taken by the issue's cursor and listed in the claim: a message sent
    # at its first try writes two row versions after the fan-out (`sending`, `sent`).
    issue_id, ids = started(session, 40)
    before = row_versions(session, ids)
    taken = ledger.claim_batch(session, issue_id, "w", NOW, 30, LEASE)
    assert [r.delivery_id for r in taken] == ids[:30]
    assert row_versions(session, ids) == before
    assert claim(session, "w").ids == ids[:30]
    # The next claim starts after them, and the one after that finds nothing fresh left.
    assert [r.delivery_id for r in ledger.claim_batch(session, issue_id, "v", NOW, 30, LEASE)
            ] == ids[30:]
    assert ledger.claim_batch(session, issue_id, "u", NOW, 30, LEASE) == []
    assert row_versions(session, ids) == before


def row_versions(session: Session, ids: list[int]) -> list[object]:
    """Each row's version: its xmin on PostgreSQL, everything it holds on SQLite."""
    session.expire_all()
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(text("SELECT xmin::text FROM deliveries WHERE id = ANY(:ids)"
                                         " ORDER BY id"), {"ids": ids}).scalars())
    table = Delivery.__table__
    return [tuple(r) for r in session.execute(
        select(table).where(table.c.id.in_(ids)).order_by(table.c.id))]


def test_a_claim_ends_with_its_batch_but_not_while_a_row_of_it_is_sending(
        session: Session) -> None:
    issue_id, ids = started(session, 3)
    assert len(ledger.claim_batch(session, issue_id, "w", NOW, 10, LEASE)) == 3
    assert ledger.mark_sending(session, ids[:1], "w", NOW, LEASE) == {ids[0]}
    # Its outcome is not on record: the claim stays, for the recovery to find the row.
    assert not ledger.end_claim(session, "w", NOW)
    assert claim(session, "w").ids == ids
    # The rows it never reached are anybody's at once, not when the lease runs out.
    taken = ledger.claim_batch(session, issue_id, "other", NOW, 10, LEASE)
    assert sorted(r.delivery_id for r in taken) == ids[1:]
    assert ledger.mark_sending(session, ids[1:], "w", NOW, LEASE) == set()
    ledger.record_outcomes(session, [ledger.Outcome(ids[0], DeliveryStatus.SENT, 250)], "w",
                           NOW, 60, resend_uncertain=True)
    assert ledger.end_claim(session, "w", NOW)
    assert ledger.renew_claim(session, "w", NOW, LEASE) == 0


def test_the_kept_counts_follow_every_change_to_the_ledger(session: Session) -> None:
    issue_id, ids = started(session, 8)
    other_id, _ = started(session, 2, number=2)
    assert ledger.counts(session, issue_id)["queued"] == 8
    assert_counts_kept(session)
    ledger.claim_batch(session, issue_id, "w", NOW, 6, LEASE)
    assert ledger.mark_sending(session, ids[:6], "w", NOW, LEASE) == set(ids[:6])
    assert_counts_kept(session)
    ledger.record_outcomes(session, [
        ledger.Outcome(ids[0], DeliveryStatus.SENT, 250),
        ledger.Outcome(ids[1], DeliveryStatus.DEFERRED, 451, "try later"),
        ledger.Outcome(ids[2], DeliveryStatus.FAILED, 550, "no such user"),
        ledger.Outcome(ids[3], DeliveryStatus.UNCERTAIN, None, "dropped after the dot"),
    ], "w", NOW, 60, resend_uncertain=False)
    assert_counts_kept(session)
    # The recovery: the lease ran out with two rows `sending`.
    later = NOW + LEASE + timedelta(seconds=1)
    assert ledger.expire_leases(session, later, resend_uncertain=True) == 2
    assert_counts_kept(session)
    assert_only_waiting_rows_have_a_next_attempt(session)
    found = ledger.counts(session, issue_id)
    assert (found["sent"], found["failed"], found["uncertain"], found["possible_duplicates"]) \
        == (1, 1, 1, 3)
    # Ops: give up on deferred rows, retry the failed ones, cancel the issue.
    ledger.fail_expired(session, later + timedelta(days=3))
    control.retry_failed(session, issue_id, later, timedelta(hours=48))
    assert_counts_kept(session)
    control.cancel(session, other_id, later)
    assert_counts_kept(session)
    assert_only_waiting_rows_have_a_next_attempt(session)
    assert ledger.counts(session, other_id)["cancelled"] == 10  # all ten readers
    # Rows deleted (by hand, or with their issue) are taken off too.
    session.execute(delete(Delivery).where(Delivery.issue_id == other_id))
    assert_counts_kept(session)
    assert not any(ledger.counts(session, other_id).values())


def test_a_chunk_does_not_wait_for_an_issue_locked_for_update(runtime: Runtime) -> None:
    # Counting takes no lock on the issue's row (delivery_counts has no foreign key):
    # a chunk must not queue behind a cancel or an issue's end that holds the issue
    # FOR UPDATE, since that transaction may itself wait on the chunk's rows.
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("row locks and the one-statement chunk are PostgreSQL's")
    with unit_of_work(runtime.sessions) as session:
        issue_id, ids = started(session, 3)
        ledger.claim_batch(session, issue_id, "w", NOW, 3, LEASE)
    with runtime.engine.connect() as holder, holder.begin():
        holder.execute(text(f"SELECT id FROM issues WHERE id = {issue_id} FOR UPDATE"))
        with runtime.engine.connect() as chunk, chunk.begin():
            chunk.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert ledger.record_sent_and_mark(chunk, [], ids, "w", NOW, LEASE,
                                               marked_at=NOW) == set(ids)


def test_marking_rows_sending_writes_no_index_entry(session: Session) -> None:
    # No index of the ledger names `status`, and the fan-out leaves room on each page
    # (fillfactor), so the update is HOT: heap-only, no entry in any of the indexes.
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("HOT updates are PostgreSQL's")
    issue_id, ids = started(session, 600)
    ledger.claim_in_one_statement(session.connection(), issue_id, "w", NOW, 600, LEASE)
    before = session.scalar(text(
        "SELECT pg_stat_get_xact_tuples_hot_updated('deliveries'::regclass)"))
    assert ledger.mark_sending(session, ids, "w", NOW, LEASE) == set(ids)
    hot = session.scalar(text(
        "SELECT pg_stat_get_xact_tuples_hot_updated('deliveries'::regclass)"))
    # Nearly all: a page's new versions take a little more room than its rows did (line
    # pointers), and versions written in this same transaction cannot be pruned yet.
    # With an index on `status`, none would be.
    assert hot - before >= 0.9 * len(ids), (hot - before, len(ids))


def test_rows_wait_for_a_worker_after_the_cursor_or_when_due_again(session: Session) -> None:
    issue_id, ids = started(session, 4)
    assert ledger.waiting_since(session, issue_id, NOW) == NOW  # the fan-out's rows
    assert len(ledger.claim_batch(session, issue_id, "w", NOW, 4, LEASE)) == 4
    # Fresh rows inside a live claim are its holder's: nobody else waits for them.
    assert ledger.waiting_since(session, issue_id, NOW) is None
    assert not ledger.has_due_rows(session, issue_id, NOW)
    ledger.mark_sending(session, ids[:2], "w", NOW, LEASE)
    later = NOW + timedelta(minutes=1)
    ledger.record_outcomes(session, [
        ledger.Outcome(ids[0], DeliveryStatus.SENT, 250),
        ledger.Outcome(ids[1], DeliveryStatus.DEFERRED, 451, "later", retry_at=later),
    ], "w", NOW, 60, resend_uncertain=False)
    # The batch ends early: its two unreached rows are given back, due at once.
    ledger.end_claim(session, "w", NOW)
    assert ledger.waiting_since(session, issue_id, NOW) == NOW
    ledger.claim_batch(session, issue_id, "v", NOW, 4, LEASE)
    ledger.mark_sending(session, ids[2:], "v", NOW, LEASE)
    ledger.record_outcomes(session, [ledger.Outcome(i, DeliveryStatus.SENT, 250) for i in ids[2:]],
                           "v", NOW, 60, resend_uncertain=False)
    ledger.end_claim(session, "v", NOW, reached_all=True)
    # Left: the deferred row, due at `later`.
    assert ledger.waiting_since(session, issue_id, NOW) is None
    assert ledger.waiting_since(session, issue_id, later) == later
    assert ledger.has_due_rows(session, issue_id, later)
    assert_only_waiting_rows_have_a_next_attempt(session)
