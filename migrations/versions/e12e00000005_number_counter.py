"""Record-number counters (TS, XTD, FX): one row per prefix, seeded from the stored numbers

Revision ID: e12e00000005
Revises: e12c00000003
Create Date: 2026-12-02 07:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e12e00000005'
down_revision = 'e12c00000003'
branch_labels = None
depends_on = None

# (table, column): the numbered records; a number reads <prefix><serial>, the prefix ending in '-'.
NUMBERED = (('complaint', 'number'), ('violation', 'sheet_no'), ('release_slip', 'number'))


def upgrade():
    counter = op.create_table(
        'number_counter',
        sa.Column('prefix', sa.String(length=32), nullable=False),
        sa.Column('last', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('prefix', name=op.f('pk_number_counter')),
    )
    bind = op.get_bind()
    last: dict[str, int] = {}
    for table, column in NUMBERED:
        numbers = bind.execute(sa.text(f'SELECT {column} FROM {table} WHERE {column} IS NOT NULL')).scalars()
        for number in numbers:
            prefix, _, serial = number.rpartition('-')
            if prefix and serial.isdigit():
                last[prefix + '-'] = max(last.get(prefix + '-', 0), int(serial))
    if last:
        op.bulk_insert(counter, [{'prefix': p, 'last': n} for p, n in sorted(last.items())])


def downgrade():
    op.drop_table('number_counter')
