"""deliveries: the lease moves from every held row to one row per claim (delivery_claims)

A worker's batch was leased row by row: every row carried `lease_until`, written by
the claim and by marking the row `sending`, renewed once a second on every row the
batch still held, and kept in ix_deliveries_lease_until. A claim is now one row of
`delivery_claims` (its claimant name, its lease, the ids it took); a ledger row is
held while its `worker` names a claim whose lease has not run out.

Rows held when this runs (a send in progress) keep their holder: one claim is
written per claimant name, with the latest of its rows' leases. The downgrade puts
each claim's lease back on its rows.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

HELD = ("queued", "deferred", "sending")
IDS = postgresql.ARRAY(sa.BigInteger()).with_variant(sa.JSON(), "sqlite")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _tables() -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData()
    deliveries = sa.Table(
        "deliveries", meta, sa.Column("id", BIG_ID), sa.Column("issue_id", sa.Integer()),
        sa.Column("status", sa.String(16)), sa.Column("worker", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
    )
    claims = sa.Table(
        "delivery_claims", meta, sa.Column("id", BIG_ID), sa.Column("issue_id", sa.Integer()),
        sa.Column("worker", sa.String(200)), sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("ids", IDS), sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    return deliveries, claims


def upgrade() -> None:
    op.create_table(
        "delivery_claims",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issues.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("worker", sa.String(200), nullable=False, unique=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ids", IDS, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    deliveries, claims = _tables()
    bind = op.get_bind()
    held: dict[tuple[int, str], tuple[list[int], object]] = {}
    for row in bind.execute(
        sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.worker,
                  deliveries.c.lease_until)
        .where(deliveries.c.lease_until.is_not(None), deliveries.c.worker.is_not(None),
               deliveries.c.status.in_(HELD))
        .order_by(deliveries.c.id)
    ):
        ids, until = held.setdefault((row.issue_id, row.worker), ([], row.lease_until))
        ids.append(row.id)
        held[(row.issue_id, row.worker)] = (ids, max(until, row.lease_until))
    for (issue_id, worker), (ids, until) in held.items():
        bind.execute(claims.insert().values(issue_id=issue_id, worker=worker, lease_until=until,
                                            ids=ids, created_at=until))
    op.drop_index("ix_deliveries_lease_until", table_name="deliveries")
    op.drop_column("deliveries", "lease_until")


def downgrade() -> None:
    op.add_column("deliveries", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    deliveries, claims = _tables()
    bind = op.get_bind()
    for claim in bind.execute(sa.select(claims.c.worker, claims.c.lease_until, claims.c.ids)).all():
        bind.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(list(claim.ids)), deliveries.c.worker == claim.worker,
                   deliveries.c.status.in_(HELD))
            .values(lease_until=claim.lease_until)
        )
    op.create_index("ix_deliveries_lease_until", "deliveries", ["lease_until"], unique=False,
                    postgresql_where=sa.text("lease_until IS NOT NULL"),
                    sqlite_where=sa.text("lease_until IS NOT NULL"))
    op.drop_table("delivery_claims")
