"""deliveries: the (status, next_attempt_at) index becomes a partial index of deferred rows

Every row version a send writes (the fan-out's insert, then claimed, `sending` and
`sent`) added an entry to ix_deliveries_status_next; only deferred rows are ever
looked up through it. On PostgreSQL the new index is built and the old one dropped
CONCURRENTLY, so a large ledger keeps taking writes meanwhile.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

DEFERRED = sa.text("status = 'deferred'")


def _concurrently() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    concurrently = _concurrently()
    with op.get_context().autocommit_block():
        op.create_index("ix_deliveries_deferred", "deliveries", ["next_attempt_at"],
                        postgresql_where=DEFERRED, sqlite_where=DEFERRED,
                        postgresql_concurrently=concurrently)
        op.drop_index("ix_deliveries_status_next", table_name="deliveries",
                      postgresql_concurrently=concurrently)


def downgrade() -> None:
    concurrently = _concurrently()
    with op.get_context().autocommit_block():
        op.create_index("ix_deliveries_status_next", "deliveries", ["status", "next_attempt_at"],
                        postgresql_concurrently=concurrently)
        op.drop_index("ix_deliveries_deferred", table_name="deliveries",
                      postgresql_concurrently=concurrently)
