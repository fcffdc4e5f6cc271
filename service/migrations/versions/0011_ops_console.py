"""ops console: incident log, periodic job marks, workers seen

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = service.db.UtcDateTime(timezone=True)
    op.create_table(
        "ops_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_incidents")),
    )
    op.create_index("ix_ops_incidents_at", "ops_incidents", ["at"], unique=False)
    op.create_table(
        "ops_marks",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("last_at", when, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failing_since", when, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ops_marks")),
    )
    op.create_table(
        "ops_workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pool", sa.Integer(), nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("last_seen_at", when, nullable=False),
        sa.Column("stopped_at", when, nullable=True),
        sa.Column("lost_at", when, nullable=True),
        sa.Column("draining_at", when, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ops_workers")),
    )
    op.create_table(
        "ops_counters",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("labels", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", name=op.f("pk_ops_counters")),
    )


def downgrade() -> None:
    op.drop_table("ops_counters")
    op.drop_table("ops_workers")
    op.drop_table("ops_marks")
    op.drop_index("ix_ops_incidents_at", table_name="ops_incidents")
    op.drop_table("ops_incidents")
