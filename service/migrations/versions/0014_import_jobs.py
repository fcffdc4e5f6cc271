"""readers imported from the desk, and indexes for the growth figures

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = service.db.UtcDateTime(timezone=True)
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("import_as", sa.Enum("pending", "confirmed", "unsubscribed", "bounced", "complained",
                                       name="subscriber_status", native_enum=False, length=16),
                  nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("status", sa.Enum("queued", "running", "done", "failed", name="import_status",
                                    native_enum=False, length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("already_present", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("started_at", when, nullable=True),
        sa.Column("finished_at", when, nullable=True),
        sa.Column("lease_until", when, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["staff_accounts.id"],
                                name=op.f("fk_import_jobs_actor_id_staff_accounts"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_jobs")),
    )
    op.create_index("ix_import_jobs_status", "import_jobs", ["status"], unique=False)
    op.create_table(
        "import_rejections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["import_jobs.id"],
                                name=op.f("fk_import_rejections_job_id_import_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_rejections")),
    )
    op.create_index(op.f("ix_import_rejections_job_id"), "import_rejections", ["job_id"], unique=False)
    op.create_index("ix_subscriber_events_kind_at", "subscriber_events", ["kind", "at"], unique=False)
    op.create_index("ix_consent_records_kind_at", "consent_records", ["kind", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_consent_records_kind_at", table_name="consent_records")
    op.drop_index("ix_subscriber_events_kind_at", table_name="subscriber_events")
    op.drop_index(op.f("ix_import_rejections_job_id"), table_name="import_rejections")
    op.drop_table("import_rejections")
    op.drop_index("ix_import_jobs_status", table_name="import_jobs")
    op.drop_table("import_jobs")
