"""Scheduled jobs: the in-process sweep's lease and each job's last run (/healthz)

Revision ID: a17000000001
Revises: e12f00000006
Create Date: 2026-12-02 15:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a17000000001'
down_revision = 'e12f00000006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_run',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('holder', sa.String(length=128), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_ok', sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_job_run')),
    )


def downgrade():
    op.drop_table('job_run')
