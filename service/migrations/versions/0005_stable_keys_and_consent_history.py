"""instance keys, consent history, confirm nonces

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Suppression hashes move from CHAPAR_SECRET_KEY to a key of the installation's own
that never rotates. The hashes already stored were made with the secret this
migration runs under, so when there are any, that secret's bytes become the key:
the alternative, a fresh key, would forget every erasure made so far (only the
hashes are left; nothing can be rehashed). With no suppressions yet, the key is
random. Either way the key is stored once here and never changes.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import service.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def suppression_key(connection: sa.Connection) -> bytes:
    stored = connection.execute(sa.text("SELECT 1 FROM suppressions LIMIT 1")).first()
    if stored is None:
        return secrets.token_bytes(32)
    from service.settings import Settings

    # The deployment's own settings: in production they refuse to load without a real
    # secret, so a migration run without it stops here instead of seeding a wrong key.
    return Settings().secret_key.encode()


def upgrade() -> None:
    instance_keys = op.create_table(
        "instance_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("created_at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instance_keys")),
    )
    now = datetime.now(UTC)
    op.bulk_insert(instance_keys, [
        {"name": "suppression", "value": suppression_key(op.get_bind()).hex(), "created_at": now},
        {"name": "message-id", "value": secrets.token_bytes(32).hex(), "created_at": now},
    ])

    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("at", service.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("nonce", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name=op.f("fk_consent_records_subscriber_id_subscribers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_records_subscriber_id"), ["subscriber_id"],
                              unique=False)
    # The history starts with the consent each subscriber holds today.
    op.execute(
        "INSERT INTO consent_records (subscriber_id, at, kind, source, ip, user_agent, nonce) "
        "SELECT id, consent_at, 'recorded', consent_source, consent_ip, consent_user_agent, NULL "
        "FROM subscribers ORDER BY id"
    )

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        # NULL on existing rows: the confirm links already mailed to them carry no nonce.
        batch_op.add_column(sa.Column("confirm_nonce", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("confirm_nonce")
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_records_subscriber_id"))
    op.drop_table("consent_records")
    op.drop_table("instance_keys")
