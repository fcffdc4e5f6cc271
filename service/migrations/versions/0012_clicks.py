"""clicks on tracked article links, per article (per reader only when configured)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("filtered", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_clicks_issue_id_issues"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"],
                                name=op.f("fk_clicks_article_id_articles"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name=op.f("fk_clicks_subscriber_id_subscribers"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clicks")),
    )
    op.create_index("ix_clicks_issue_article", "clicks", ["issue_id", "article_id"], unique=False)
    op.create_index("ix_clicks_subscriber_id", "clicks", ["subscriber_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_clicks_subscriber_id", table_name="clicks")
    op.drop_index("ix_clicks_issue_article", table_name="clicks")
    op.drop_table("clicks")
