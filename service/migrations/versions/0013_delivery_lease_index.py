"""deliveries: an index on the lease of rows a worker holds

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: only claimed and sending rows have a lease, so the recovery that runs
    # every few seconds and `chapar status` read a handful of entries, not the ledger.
    op.create_index("ix_deliveries_lease_until", "deliveries", ["lease_until"], unique=False,
                    postgresql_where=sa.text("lease_until IS NOT NULL"),
                    sqlite_where=sa.text("lease_until IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_lease_until", table_name="deliveries")
