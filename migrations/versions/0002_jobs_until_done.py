"""Outbox rows are kept until their job is done: leases, retries scheduled in the database, adoption.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('done_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_outbox_external_id'), ['external_id'])
        batch_op.drop_index('ix_outbox_unpublished')
        batch_op.create_index('ix_outbox_unfinished', ['published_at', 'id'], unique=False,
                              postgresql_where=sa.text('done_at IS NULL'), sqlite_where=sa.text('done_at IS NULL'))
    # Jobs published before this version had no done mark; they were finished or are lost for good.
    op.execute("UPDATE outbox SET done_at = published_at WHERE published_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unfinished', postgresql_where=sa.text('done_at IS NULL'),
                            sqlite_where=sa.text('done_at IS NULL'))
        batch_op.create_index('ix_outbox_unpublished', ['published_at', 'id'], unique=False)
        batch_op.drop_constraint(batch_op.f('uq_outbox_external_id'), type_='unique')
        for column in ('external_id', 'done_at', 'lease_until', 'claimed_by', 'started_at', 'run_after'):
            batch_op.drop_column(column)
