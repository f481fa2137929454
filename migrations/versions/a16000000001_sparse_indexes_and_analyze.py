"""Partial indexes on deleted_at and complaint.duplicate_of_id, list sort-key indexes, ANALYZE (issue 16)

Revision ID: a16000000001
Revises: a20c00000001
Create Date: 2026-12-02 15:45:00

Every list filters ``deleted_at IS NULL``; a full index on that column led SQLite, without
statistics, to walk every live row and sort them in a temp B-tree for each page. The indexes now
hold only the rows where the column is set (``WHERE … IS NOT NULL``), which is all they were
ever asked for. ANALYZE gives both planners statistics (the sweep repeats it weekly).
"""

import sqlalchemy as sa
from alembic import op

revision = "a16000000001"
down_revision = 'a20c00000001'
branch_labels = None
depends_on = None

# Tables with the Tracked mixin's soft delete, frozen as of this revision.
TRACKED = (
    "archive",
    "archive_access",
    "archive_arrears",
    "archive_event",
    "complaint",
    "duty_followup",
    "duty_handover",
    "duty_roster",
    "duty_swap",
    "help_request",
    "key_custody",
    "move_damage",
    "move_in",
    "move_out",
    "patrol_record",
    "release_slip",
    "renovation",
    "renovation_hot_work",
    "renovation_power",
    "repair_order",
    "violation",
    "visit",
)
SPARSE = [(table, "deleted_at") for table in TRACKED] + [("complaint", "duplicate_of_id")]
# Default sort keys of list screens that had no index (tests/test_list_plans.py).
SORT_KEYS = (
    ("resident_change", "at"),
    ("vip_communication", "at"),
    ("role_change", "at"),
    ("security_event", "at"),
    ("repair_order", "reported_at"),
    ("move_in", "move_in_date"),
    ("move_out", "planned_date"),
    ("release_slip", "issued_at"),
    ("move_damage", "restore_by"),
)


def _analyze() -> None:
    op.execute("ANALYZE")


def upgrade() -> None:
    for table, column in SPARSE:
        name = f"ix_{table}_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], sqlite_where=where, postgresql_where=where)
    for table, column in SORT_KEYS:
        op.create_index(f"ix_{table}_{column}", table, [column])
    _analyze()


def downgrade() -> None:
    for table, column in SORT_KEYS:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table, column in SPARSE:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column])
