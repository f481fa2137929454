"""CMP-9 written complaints' register number and written reply; DTY-4 work handed over by name

Revision ID: a20b00000001
Revises: a17000000001
Create Date: 2026-12-02 15:30:00

Plain ADD COLUMN, never a batch rebuild: rebuilding ``complaint`` or ``duty_handover`` on SQLite
drops the table with foreign keys on, which would cascade to the rows that point at them. SQLite
cannot ALTER constraints, so the new foreign keys go inline with the column.
"""
from alembic import op
import sqlalchemy as sa


revision = 'a20b00000001'
down_revision = 'a17000000001'
branch_labels = None
depends_on = None


def _fk_column(table: str, column: str, target: str) -> None:
    name = f'fk_{table}_{column}_{target}'
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(f'ALTER TABLE {table} ADD COLUMN {column} INTEGER CONSTRAINT {name} REFERENCES {target} (id)')
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(name, table, target, [column], ['id'])


def upgrade():
    op.add_column('complaint', sa.Column('letter_register_no', sa.String(length=16), nullable=True))
    op.add_column('complaint', sa.Column('reply_letter_text', sa.Text(), nullable=True))
    op.add_column('complaint', sa.Column('reply_letter_date', sa.Date(), nullable=True))
    op.add_column('complaint', sa.Column('reply_signed_by', sa.String(length=64), nullable=True))
    op.add_column('complaint', sa.Column('reply_recorded_at', sa.DateTime(timezone=True), nullable=True))
    _fk_column('complaint', 'reply_archive_id', 'archive')
    op.create_index(op.f('ix_complaint_letter_register_no'), 'complaint', ['letter_register_no'], unique=True)
    op.create_index(op.f('ix_complaint_reply_archive_id'), 'complaint', ['reply_archive_id'], unique=False)

    _fk_column('duty_handover', 'handed_to_id', 'staff')
    op.create_table(
        'duty_handover_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('handover_id', sa.Integer(), nullable=False),
        sa.Column('follow_up_id', sa.Integer(), nullable=True),
        sa.Column('help_request_id', sa.Integer(), nullable=True),
        sa.Column('description', sa.String(length=300), nullable=False),
        sa.Column('to_staff_id', sa.Integer(), nullable=False),
        sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['handover_id'], ['duty_handover.id'],
                                name=op.f('fk_duty_handover_item_handover_id_duty_handover'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['follow_up_id'], ['duty_followup.id'],
                                name=op.f('fk_duty_handover_item_follow_up_id_duty_followup'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['help_request_id'], ['help_request.id'],
                                name=op.f('fk_duty_handover_item_help_request_id_help_request'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['to_staff_id'], ['staff.id'], name=op.f('fk_duty_handover_item_to_staff_id_staff')),
        sa.ForeignKeyConstraint(['acknowledged_by_id'], ['staff.id'],
                                name=op.f('fk_duty_handover_item_acknowledged_by_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_duty_handover_item')),
    )
    op.create_index(op.f('ix_duty_handover_item_handover_id'), 'duty_handover_item', ['handover_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_duty_handover_item_handover_id'), table_name='duty_handover_item')
    op.drop_table('duty_handover_item')
    op.drop_index(op.f('ix_complaint_reply_archive_id'), table_name='complaint')
    op.drop_index(op.f('ix_complaint_letter_register_no'), table_name='complaint')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_duty_handover_handed_to_id_staff', 'duty_handover', type_='foreignkey')
        op.drop_constraint('fk_complaint_reply_archive_id_archive', 'complaint', type_='foreignkey')
    for table, column in (('duty_handover', 'handed_to_id'), ('complaint', 'reply_archive_id'),
                          ('complaint', 'reply_recorded_at'), ('complaint', 'reply_signed_by'),
                          ('complaint', 'reply_letter_date'), ('complaint', 'reply_letter_text'),
                          ('complaint', 'letter_register_no')):
        op.drop_column(table, column)
