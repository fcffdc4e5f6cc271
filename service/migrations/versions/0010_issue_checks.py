"""pre-send checks: stored link checks and admins' overrides

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issue_link_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("requested_at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", service.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"],
                                name=op.f("fk_issue_link_checks_issue_id_issues"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issue_link_checks")),
        sa.UniqueConstraint("issue_id", "url", name=op.f("uq_issue_link_checks_issue_id_url")),
    )
    op.create_index("ix_issue_link_checks_issue_id", "issue_link_checks", ["issue_id"], unique=False)
    op.create_table(
        "issue_check_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"],
                                name=op.f("fk_issue_check_overrides_issue_id_issues"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issue_check_overrides")),
    )
    op.create_index("ix_issue_check_overrides_issue_id", "issue_check_overrides", ["issue_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_issue_check_overrides_issue_id", table_name="issue_check_overrides")
    op.drop_table("issue_check_overrides")
    op.drop_index("ix_issue_link_checks_issue_id", table_name="issue_link_checks")
    op.drop_table("issue_link_checks")
