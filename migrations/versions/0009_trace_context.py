"""A job's trace: the W3C traceparent of the request or task that wrote it, so every send of the
job (the relay's too) continues that trace (core/tracing.py). NULL when tracing is off.

Revision ID: 0009_trace_context
Revises: 0008_locales
"""
from alembic import op
import sqlalchemy as sa

revision = '0009_trace_context'
down_revision = '0008_locales'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace_context', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
