"""deliveries (PostgreSQL): the foreign keys' actions kept by triggers, their per-row checks gone

The fan-out writes one ledger row per confirmed reader in one INSERT ... SELECT. Its
two foreign keys checked every row it wrote, each with a query and a row lock of its
own: at 100,000 readers 0.6 s of a 1.2 s statement (EXPLAIN ANALYZE), for ids the
same statement had just read from `subscribers` and an issue row it holds locked.
No other statement writes `issue_id` or `subscriber_id`.

What the keys did is kept:

- ON DELETE CASCADE from `issues`: a row trigger on `issues` deletes the issue's
  ledger rows (through the unique (issue_id, subscriber_id) index). The fan-out
  updates the issue's row first, so a delete of the issue waits for its commit.
- ON DELETE SET NULL from `subscribers` (an erased reader's rows stay, anonymous): a
  row trigger on `subscribers` sets their `subscriber_id` to NULL (through
  ix_deliveries_subscriber_id). A fan-out may have read the reader before the delete
  and not yet committed: the trigger first takes the fan-out lock exclusively
  (`delivery.models.FAN_OUT_LOCK`, a transaction-level advisory lock the fan-out
  holds shared while it writes), so it waits for that commit and then sees the
  fan-out's rows; a fan-out that starts after the delete waits for it and does not
  see the reader. Both rely on READ COMMITTED, PostgreSQL's default and the
  application's: each statement sees what committed before it began.

SQLite keeps the keys 0001 made (it cannot drop a constraint without copying the
table, and its fan-outs are small).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# service.delivery.models.FAN_OUT_LOCK, written out: a migration does not follow later code.
FAN_OUT_LOCK = 7163082342631892591

_UP = (
    """
CREATE FUNCTION chapar_issue_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE issue_id = OLD.id;
    RETURN NULL;
END
$$
""",
    "CREATE TRIGGER issues_delete_ledger AFTER DELETE ON issues"
    " FOR EACH ROW EXECUTE FUNCTION chapar_issue_deleted()",
    f"""
CREATE FUNCTION chapar_subscriber_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({FAN_OUT_LOCK});
    UPDATE deliveries SET subscriber_id = NULL WHERE subscriber_id = OLD.id;
    RETURN NULL;
END
$$
""",
    "CREATE TRIGGER subscribers_delete_anonymise_ledger AFTER DELETE ON subscribers"
    " FOR EACH ROW EXECUTE FUNCTION chapar_subscriber_deleted()",
    "ALTER TABLE deliveries DROP CONSTRAINT fk_deliveries_issue_id_issues",
    "ALTER TABLE deliveries DROP CONSTRAINT fk_deliveries_subscriber_id_subscribers",
)

_DOWN = (
    "DROP TRIGGER subscribers_delete_anonymise_ledger ON subscribers",
    "DROP FUNCTION chapar_subscriber_deleted()",
    "DROP TRIGGER issues_delete_ledger ON issues",
    "DROP FUNCTION chapar_issue_deleted()",
    # What the keys would have refused, settled as their actions would have.
    "DELETE FROM deliveries AS d WHERE NOT EXISTS (SELECT 1 FROM issues AS i WHERE i.id = d.issue_id)",
    "UPDATE deliveries AS d SET subscriber_id = NULL WHERE subscriber_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM subscribers AS s WHERE s.id = d.subscriber_id)",
    "ALTER TABLE deliveries ADD CONSTRAINT fk_deliveries_issue_id_issues FOREIGN KEY (issue_id)"
    " REFERENCES issues (id) ON DELETE CASCADE",
    "ALTER TABLE deliveries ADD CONSTRAINT fk_deliveries_subscriber_id_subscribers"
    " FOREIGN KEY (subscriber_id) REFERENCES subscribers (id) ON DELETE SET NULL",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DOWN:
            op.execute(statement)
