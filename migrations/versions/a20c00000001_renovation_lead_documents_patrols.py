"""REN-9 hot-work lead and check-in, REN-10 acceptance documents, REN-11 daily patrol days

Revision ID: a20c00000001
Revises: a20a00000001
Create Date: 2026-12-02 15:20:00

"""

from alembic import op
import sqlalchemy as sa


revision = "a20c00000001"
down_revision = 'a20a00000001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "renovation_patrol_day",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("renovation_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("idle_reason", sa.String(length=500), nullable=True),
        sa.Column("patrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("patrolled_by_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_transition", sa.String(length=64), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_round", sa.Integer(), nullable=False),
        sa.Column("pending_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_comment", sa.Text(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("pending_by_id", sa.Integer(), nullable=True),
        sa.Column("deleted_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["staff.id"], name=op.f("fk_renovation_patrol_day_created_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"], ["staff.id"], name=op.f("fk_renovation_patrol_day_deleted_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["patrolled_by_id"], ["staff.id"], name=op.f("fk_renovation_patrol_day_patrolled_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["pending_by_id"], ["staff.id"], name=op.f("fk_renovation_patrol_day_pending_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["renovation_id"],
            ["renovation.id"],
            name=op.f("fk_renovation_patrol_day_renovation_id_renovation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renovation_patrol_day")),
        sa.UniqueConstraint("renovation_id", "day", name=op.f("uq_renovation_patrol_day_renovation_id_day")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("renovation_patrol_day", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_renovation_patrol_day_closed_at"), ["closed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_renovation_patrol_day_day"), ["day"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_renovation_patrol_day_deleted_at"),
            ["deleted_at"],
            unique=False,
            sqlite_where=sa.text("deleted_at IS NOT NULL"),
            postgresql_where=sa.text("deleted_at IS NOT NULL"),
        )
        batch_op.create_index(batch_op.f("ix_renovation_patrol_day_due_at"), ["due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_renovation_patrol_day_pending_transition"), ["pending_transition"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_renovation_patrol_day_renovation_id"), ["renovation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renovation_patrol_day_state"), ["state"], unique=False)

    # Plain ADD COLUMN (no table rebuild): the tables keep AUTOINCREMENT and their triggers on SQLite.
    op.add_column("renovation", sa.Column("asbuilt_sets", sa.Integer(), nullable=True))
    op.add_column("renovation", sa.Column("asbuilt_scans", sa.Integer(), server_default="0", nullable=False))
    op.add_column("renovation", sa.Column("invoice_scans", sa.Integer(), server_default="0", nullable=False))
    op.add_column("renovation", sa.Column("receipt_scans", sa.Integer(), server_default="0", nullable=False))
    op.add_column("renovation_hot_work", sa.Column("lead_name", sa.String(length=64), nullable=True))
    op.add_column("renovation_hot_work", sa.Column("lead_phone", sa.Text(), nullable=True))
    op.add_column("renovation_hot_work", sa.Column("lead_id_no", sa.Text(), nullable=True))
    op.add_column("renovation_hot_work", sa.Column("lead_checked_in_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":  # SQLite cannot ALTER constraints; the FK goes inline
        op.execute(
            "ALTER TABLE renovation_hot_work ADD COLUMN lead_checked_in_by_id INTEGER "
            "CONSTRAINT fk_renovation_hot_work_lead_checked_in_by_id_staff REFERENCES staff (id)"
        )
    else:
        op.add_column("renovation_hot_work", sa.Column("lead_checked_in_by_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_renovation_hot_work_lead_checked_in_by_id_staff",
            "renovation_hot_work",
            "staff",
            ["lead_checked_in_by_id"],
            ["id"],
        )
    op.add_column("renovation_hot_work", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("renovation_hot_work", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":  # SQLite: the column's inline REFERENCES goes with it
            batch_op.drop_constraint(batch_op.f("fk_renovation_hot_work_lead_checked_in_by_id_staff"), type_="foreignkey")
        batch_op.drop_column("started_at")
        batch_op.drop_column("lead_checked_in_by_id")
        batch_op.drop_column("lead_checked_in_at")
        batch_op.drop_column("lead_id_no")
        batch_op.drop_column("lead_phone")
        batch_op.drop_column("lead_name")

    with op.batch_alter_table("renovation", schema=None) as batch_op:
        batch_op.drop_column("receipt_scans")
        batch_op.drop_column("invoice_scans")
        batch_op.drop_column("asbuilt_scans")
        batch_op.drop_column("asbuilt_sets")

    with op.batch_alter_table("renovation_patrol_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_state"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_renovation_id"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_pending_transition"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_due_at"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_deleted_at"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_day"))
        batch_op.drop_index(batch_op.f("ix_renovation_patrol_day_closed_at"))

    op.drop_table("renovation_patrol_day")
