"""deliveries: no index names `status`, so a send's two row updates are HOT

A message sent at its first try updates its ledger row twice (`sending`, `sent`).
While an index named `status` (ix_deliveries_issue_status, and the predicate of
ix_deliveries_due_again), each update wrote a new entry into every index of the
table. Now:

- ix_deliveries_issue_status is dropped: an issue's counts come from
  `delivery_counts` (0021), and its rows in a status are found through the unique
  (issue_id, subscriber_id) index.
- ix_deliveries_due_again holds the rows whose `next_attempt_at` is set. A row has
  one exactly while it waits for a retry (queued or deferred); marking it `sending`,
  and every end (sent, failed, uncertain, cancelled), clears it. Rows that carry one
  in another status are cleared here.
- The table keeps half of each new page free (fillfactor 50, PostgreSQL) for the
  updated versions of its rows: a HOT update needs room on the row's own page.
  Pages written before this keep their layout.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

WAITING = sa.text("next_attempt_at IS NOT NULL")
DUE_AGAIN_BEFORE = sa.text("status IN ('queued', 'deferred') AND next_attempt_at IS NOT NULL")
FILLFACTOR = 50


def _due_again_index(where: sa.TextClause) -> None:
    """Rebuild ix_deliveries_due_again with `where`; CONCURRENTLY on PostgreSQL."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_deliveries_due_again", table_name="deliveries")
        op.create_index("ix_deliveries_due_again", "deliveries", ["next_attempt_at"],
                        sqlite_where=where)
        return
    # Each step may be run again after a failure: a CONCURRENTLY build that failed
    # leaves an invalid index behind, and the old index may already be gone.
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_deliveries_due_again_new")
        op.create_index("ix_deliveries_due_again_new", "deliveries", ["next_attempt_at"],
                        postgresql_where=where, postgresql_concurrently=True)
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_deliveries_due_again")
    op.execute("ALTER INDEX ix_deliveries_due_again_new RENAME TO ix_deliveries_due_again")


def upgrade() -> None:
    deliveries = sa.table("deliveries", sa.column("status", sa.String(16)),
                          sa.column("next_attempt_at", sa.DateTime(timezone=True)))
    op.execute(deliveries.update()
               .where(deliveries.c.next_attempt_at.is_not(None),
                      deliveries.c.status.not_in(("queued", "deferred")))
               .values(next_attempt_at=None))
    _due_again_index(WAITING)
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.drop_index("ix_deliveries_issue_status", table_name="deliveries",
                      postgresql_concurrently=postgres, if_exists=True)
    if postgres:
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    with op.get_context().autocommit_block():
        op.create_index("ix_deliveries_issue_status", "deliveries", ["issue_id", "status"],
                        postgresql_concurrently=postgres)
    _due_again_index(DUE_AGAIN_BEFORE)
