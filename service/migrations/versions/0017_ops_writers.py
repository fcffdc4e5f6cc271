"""ops writers: each sending process's last unit of work whose counters are on record

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_writers",
        sa.Column("writer", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.BigInteger(), nullable=False),
        sa.Column("at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("writer", name=op.f("pk_ops_writers")),
    )


def downgrade() -> None:
    op.drop_table("ops_writers")
