"""ARC-8 full check, estate hand-over date

Revision ID: 60df8af067b4
Revises: 7d1d61b26d99
Create Date: 2026-11-24 04:06:20.775535

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '60df8af067b4'
down_revision = '7d1d61b26d99'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN, not a batch rebuild: rebuilding archive_spot_check on SQLite drops the table
    # with foreign keys on, which would cascade-delete its recorded items.
    op.add_column('archive_spot_check', sa.Column('kind', sa.String(length=8), server_default='sample',
                                                  nullable=False))
    if op.get_bind().dialect.name == "sqlite":  # SQLite cannot ALTER constraints; the FK goes inline
        op.execute("ALTER TABLE archive_spot_check ADD COLUMN estate_id INTEGER "
                   "CONSTRAINT fk_archive_spot_check_estate_id_estate REFERENCES estate (id)")
    else:
        op.add_column('archive_spot_check', sa.Column('estate_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_archive_spot_check_estate_id_estate', 'archive_spot_check', 'estate',
                              ['estate_id'], ['id'])
    op.create_index(op.f('ix_archive_spot_check_estate_id'), 'archive_spot_check', ['estate_id'], unique=False)
    op.add_column('estate', sa.Column('handover_date', sa.Date(), nullable=True))


def downgrade():
    op.drop_column('estate', 'handover_date')
    op.drop_index(op.f('ix_archive_spot_check_estate_id'), table_name='archive_spot_check')
    with op.batch_alter_table('archive_spot_check', schema=None) as batch_op:
        batch_op.drop_constraint('fk_archive_spot_check_estate_id_estate', type_='foreignkey')
        batch_op.drop_column('estate_id')
        batch_op.drop_column('kind')
