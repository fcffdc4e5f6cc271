"""issues.claimed_through: first claims walk an issue's ledger; rows due again get their own index

A worker's first claim no longer writes the ledger rows it takes: it advances
`issues.claimed_through` past them (the rows' subscriber ids, in the order of the
unique (issue_id, subscriber_id) index) and records their ids in its claim. Rows
given back (by a worker, the recovery, ops) get a `next_attempt_at`, like deferred
rows, and are claimed again through ix_deliveries_due_again, which replaces the
index of deferred rows. On PostgreSQL the index is built and the old one dropped
CONCURRENTLY.

Rows already claimed when this runs keep their claims (delivery_claims, 0019):
their worker wrote its name on them, so they are not taken as fresh; when the
claim's lease runs out the recovery makes the unsent ones due again. Queued rows
that some worker once held (given back, or queued again by ops) are made due
again here: a worker's name on them keeps them from being taken as fresh.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

DUE_AGAIN = sa.text("status IN ('queued', 'deferred') AND next_attempt_at IS NOT NULL")
DEFERRED = sa.text("status = 'deferred'")


def _replace_index(new: str, where: sa.TextClause, old: str) -> None:
    """Build `new` on next_attempt_at (partial), then drop `old`; CONCURRENTLY on PostgreSQL."""
    concurrently = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.create_index(new, "deliveries", ["next_attempt_at"], postgresql_where=where,
                        sqlite_where=where, postgresql_concurrently=concurrently)
        op.drop_index(old, table_name="deliveries", postgresql_concurrently=concurrently)


def upgrade() -> None:
    op.add_column("issues", sa.Column(
        "claimed_through", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
    _replace_index("ix_deliveries_due_again", DUE_AGAIN, "ix_deliveries_deferred")
    deliveries = sa.table("deliveries", sa.column("status", sa.String(16)),
                          sa.column("worker", sa.String(200)),
                          sa.column("next_attempt_at", sa.DateTime(timezone=True)),
                          sa.column("created_at", sa.DateTime(timezone=True)))
    op.execute(deliveries.update()
               .where(deliveries.c.status == "queued", deliveries.c.worker.is_not(None),
                      deliveries.c.next_attempt_at.is_(None))
               .values(next_attempt_at=deliveries.c.created_at))


def downgrade() -> None:
    _replace_index("ix_deliveries_deferred", DEFERRED, "ix_deliveries_due_again")
    # Rows a first claim took carry no worker's name: without the cursor, the claim
    # before 0020 takes rows by their worker's live claim, so name the claim's worker.
    bind = op.get_bind()
    meta = sa.MetaData()
    deliveries = sa.Table("deliveries", meta, sa.Column("id", sa.BigInteger()),
                          sa.Column("status", sa.String(16)), sa.Column("worker", sa.String(200)))
    claims = sa.Table("delivery_claims", meta, sa.Column("worker", sa.String(200)),
                      sa.Column("ids", postgresql.ARRAY(sa.BigInteger()).with_variant(
                          sa.JSON(), "sqlite")))
    for worker, ids in bind.execute(sa.select(claims.c.worker, claims.c.ids)).all():
        bind.execute(deliveries.update()
                     .where(deliveries.c.id.in_(list(ids)), deliveries.c.worker.is_(None),
                            deliveries.c.status.in_(("queued", "deferred")))
                     .values(worker=worker))
    op.drop_column("issues", "claimed_through")
