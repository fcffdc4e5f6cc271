"""delivery_counts: an issue's ledger rows per status, kept by triggers on deliveries

Every reader that asked "how many rows of this issue are sent, pending, failed"
(the status view, /metrics, the desk's results, the sweeper, an issue's end) counted
the ledger through ix_deliveries_issue_status, and that index, naming `status`, is
what keeps a send's row updates from being HOT (0022 drops it). The counts now live
in `delivery_counts`, written by the statements that change the ledger, through
triggers, so no code path can forget them.

On PostgreSQL one statement-level trigger per INSERT, UPDATE and DELETE adds each statement's
net change per (issue, status), from its transition tables, to the row of the backend
that ran it (`slot` = pg_backend_pid()): two transactions never write the same
counts row, so a count never makes one wait for another or deadlock. Readers sum the
slots. On SQLite (one writer at a time) a row-level trigger keeps slot 0.

A DELETE trigger takes deleted rows off too (an issue deleted with its ledger, rows
pruned by hand). `issue_id` has no foreign key: its check would lock the issue's row
(FOR KEY SHARE) from inside a worker's chunk statement, which could then wait on a
cancel that holds the issue FOR UPDATE while it waits on the chunk's rows.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE FUNCTION chapar_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_counts AS c (issue_id, status, slot, number, duplicates)
        SELECT issue_id, status, pg_backend_pid(), count(*), sum(uncertain_count)
        FROM new_rows GROUP BY issue_id, status ORDER BY issue_id, status
        ON CONFLICT (issue_id, status, slot) DO UPDATE
        SET number = c.number + EXCLUDED.number, duplicates = c.duplicates + EXCLUDED.duplicates;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO delivery_counts AS c (issue_id, status, slot, number, duplicates)
        SELECT issue_id, status, pg_backend_pid(), -count(*), -sum(uncertain_count)
        FROM old_rows GROUP BY issue_id, status ORDER BY issue_id, status
        ON CONFLICT (issue_id, status, slot) DO UPDATE
        SET number = c.number + EXCLUDED.number, duplicates = c.duplicates + EXCLUDED.duplicates;
    ELSE
        INSERT INTO delivery_counts AS c (issue_id, status, slot, number, duplicates)
        SELECT issue_id, status, pg_backend_pid(), sum(n), sum(d) FROM (
            SELECT issue_id, status, 1 AS n, uncertain_count AS d FROM new_rows
            UNION ALL
            SELECT issue_id, status, -1, -uncertain_count FROM old_rows
        ) AS change
        GROUP BY issue_id, status HAVING sum(n) <> 0 OR sum(d) <> 0
        ORDER BY issue_id, status
        ON CONFLICT (issue_id, status, slot) DO UPDATE
        SET number = c.number + EXCLUDED.number, duplicates = c.duplicates + EXCLUDED.duplicates;
    END IF;
    RETURN NULL;
END
$$
"""

_PG_TRIGGERS = (
    "CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries"
    " REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION chapar_count_deliveries()",
    "CREATE TRIGGER deliveries_counted_update AFTER UPDATE ON deliveries"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION chapar_count_deliveries()",
    "CREATE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries"
    " REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION chapar_count_deliveries()",
)

_SQLITE_ADD = """
    INSERT INTO delivery_counts (issue_id, status, slot, number, duplicates)
    VALUES (NEW.issue_id, NEW.status, 0, 1, NEW.uncertain_count)
    ON CONFLICT (issue_id, status, slot) DO UPDATE
    SET number = number + 1, duplicates = duplicates + excluded.duplicates;
"""

_SQLITE_TAKE = """
    UPDATE delivery_counts SET number = number - 1, duplicates = duplicates - OLD.uncertain_count
    WHERE issue_id = OLD.issue_id AND status = OLD.status AND slot = 0;
"""

_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries BEGIN {_SQLITE_ADD} END",
    "CREATE TRIGGER deliveries_counted_update AFTER UPDATE OF status, uncertain_count"
    f" ON deliveries BEGIN {_SQLITE_TAKE} {_SQLITE_ADD} END",
    f"CREATE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries BEGIN {_SQLITE_TAKE} END",
)
TRIGGERS = ("deliveries_counted_insert", "deliveries_counted_update", "deliveries_counted_delete")


def upgrade() -> None:
    op.create_table(
        "delivery_counts",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "status", "slot"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        # No ledger row may change between the count below and the triggers' first
        # write (workers are stopped for an upgrade; this makes sure of it).
        op.execute("LOCK TABLE deliveries IN SHARE MODE")
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(
        "INSERT INTO delivery_counts (issue_id, status, slot, number, duplicates)"
        " SELECT issue_id, status, 0, count(*), sum(uncertain_count) FROM deliveries"
        " GROUP BY issue_id, status"
    )


def downgrade() -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}" + _on_deliveries())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION chapar_count_deliveries()")
    op.drop_table("delivery_counts")


def _on_deliveries() -> str:
    return " ON deliveries" if op.get_bind().dialect.name == "postgresql" else ""
