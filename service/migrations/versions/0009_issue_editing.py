"""issue editing: the lead story, grouping by section, subject and preheader kept by hand

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch_op:
        batch_op.add_column(sa.Column("lead_article_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("group_by_section", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column("subject_by_editor", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column("preheader_by_editor", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.create_foreign_key(op.f("fk_issues_lead_article_id_articles"), "articles",
                                    ["lead_article_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch_op:
        batch_op.drop_constraint(op.f("fk_issues_lead_article_id_articles"), type_="foreignkey")
        batch_op.drop_column("preheader_by_editor")
        batch_op.drop_column("subject_by_editor")
        batch_op.drop_column("group_by_section")
        batch_op.drop_column("lead_article_id")
