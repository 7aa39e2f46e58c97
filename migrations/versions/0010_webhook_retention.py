"""Webhook retention (issue 31): finished notifications are purged after WEBHOOK_RETENTION_DAYS, found by
an index on when they finished.

Revision ID: 0010_webhook_retention
Revises: 0009_trace_context
"""
from alembic import op

revision = '0010_webhook_retention'
down_revision = '0009_trace_context'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_messages_finished_at'), ['finished_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_messages_finished_at'))
