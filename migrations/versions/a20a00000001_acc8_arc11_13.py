"""ARC-11 accompanied reading, ARC-12 document dates, ARC-13 an archive for every unit

Revision ID: a20a00000001
Revises: a20b00000001
Create Date: 2026-12-02 15:20:00

ARC-11: an access request names its customer-service companion (a staff account), who confirms
the reading on their own account. ARC-12: a document may carry its own date. ARC-13: every unit
registered before this revision gets its archive (state "open"), so unit and archive counts agree.
Plain ADD COLUMN, never a batch rebuild: rebuilding archive_access on SQLite would drop it with
foreign keys on and lose its AUTOINCREMENT.
"""

from alembic import op
import sqlalchemy as sa


revision = "a20a00000001"
down_revision = "a20b00000001"
branch_labels = None
depends_on = None


def _add_staff_fk(table: str, column: str) -> None:
    name = f"fk_{table}_{column}_staff"
    if op.get_bind().dialect.name == "sqlite":  # SQLite cannot ALTER constraints; the FK goes inline
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER CONSTRAINT {name} REFERENCES staff (id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(name, table, "staff", [column], ["id"])


def upgrade():
    _add_staff_fk("archive_access", "companion_id")
    op.create_index(op.f("ix_archive_access_companion_id"), "archive_access", ["companion_id"], unique=False)
    op.add_column("archive_access", sa.Column("reading_confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("archive_document", sa.Column("document_date", sa.Date(), nullable=True))
    # ARC-13 backfill: one open archive per unit that has none (ids never reused: plain INSERT).
    op.execute(
        "INSERT INTO archive (unit_id, state, pending_round, created_at, updated_at, version) "
        "SELECT u.id, 'open', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1 FROM unit u "
        "WHERE NOT EXISTS (SELECT 1 FROM archive a WHERE a.unit_id = u.id) ORDER BY u.id"
    )


def downgrade():
    # The backfilled archives stay: archives are kept permanently (ARC-4).
    with op.batch_alter_table("archive_document", schema=None) as batch_op:
        batch_op.drop_column("document_date")
    op.drop_index(op.f("ix_archive_access_companion_id"), table_name="archive_access")
    with op.batch_alter_table("archive_access", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":  # SQLite: the column's inline REFERENCES goes with it
            batch_op.drop_constraint("fk_archive_access_companion_id_staff", type_="foreignkey")
        batch_op.drop_column("reading_confirmed_at")
        batch_op.drop_column("companion_id")
