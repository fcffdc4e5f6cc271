"""reader search: trigram index on lower(email), (created_at, id) and source indexes,
deliveries by subscriber

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscribers_created_at", "subscribers", ["created_at", "id"], unique=False)
    op.create_index("ix_subscribers_consent_source", "subscribers",
                    ["consent_source", "created_at", "id"], unique=False)
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_subscribers_email_trgm ON subscribers "
                   "USING gin (lower(email) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_subscribers_email_trgm")
    op.drop_index("ix_deliveries_subscriber_id", table_name="deliveries")
    op.drop_index("ix_subscribers_consent_source", table_name="subscribers")
    op.drop_index("ix_subscribers_created_at", table_name="subscribers")
