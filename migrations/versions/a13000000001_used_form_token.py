"""One-time create-form tokens: a create form posted twice creates one record

Revision ID: a13000000001
Revises: a16000000001
Create Date: 2026-12-02 15:10:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = "a13000000001"
down_revision = 'a16000000001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "used_form_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_used_form_token")),
        sa.UniqueConstraint("nonce", name=op.f("uq_used_form_token_nonce")),
    )
    op.create_index(op.f("ix_used_form_token_used_at"), "used_form_token", ["used_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_used_form_token_used_at"), table_name="used_form_token")
    op.drop_table("used_form_token")
