"""issue review states, scheduled send time, weekly schedule in the database

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The status column is a plain string (no native enum, no CHECK): the new states
    # in_review, approved and scheduled need no change to it.
    with op.batch_alter_table("issues") as batch_op:
        batch_op.add_column(sa.Column("scheduled_for", service.db.UtcDateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        "weekly_schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("updated_at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weekly_schedule")),
    )


def downgrade() -> None:
    op.drop_table("weekly_schedule")
    op.execute("UPDATE issues SET status = 'draft' "
               "WHERE status IN ('in_review', 'approved', 'scheduled')")
    with op.batch_alter_table("issues") as batch_op:
        batch_op.drop_column("scheduled_for")
