"""Idempotency keys are written once, with their answer, in the effect's transaction (issue 31): a
request holds the key's advisory lock instead of a claim row, so the claim columns go. A claim left
by a request in flight when this runs is dropped: its retry runs again, as after its lease.

Revision ID: 0011_idempotency_in_effect
Revises: 0010_webhook_retention
"""
from alembic import op
import sqlalchemy as sa

revision = '0011_idempotency_in_effect'
down_revision = '0010_webhook_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE status_code IS NULL")
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_column('run_token')
        batch_op.drop_column('locked_until')
        batch_op.alter_column('status_code', existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('status_code', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('run_token', sa.String(length=32), nullable=True))
