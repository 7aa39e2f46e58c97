"""A locale on events and orders: what language their emails and documents are in.

Revision ID: 0008_locales
Revises: 0005_invoices
"""
from alembic import op
import sqlalchemy as sa

revision = '0008_locales'
down_revision = '0005_invoices'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows were written in English: that is what they keep.
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=35), server_default='en', nullable=False))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=35), server_default='en', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('locale')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('locale')
