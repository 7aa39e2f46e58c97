"""Door check-in: one row per ticket used, and a short ticket code for manual entry.

Revision ID: 0004_checkins
Revises: 0007_idempotency_webhooks
"""
import secrets

from alembic import op
import sqlalchemy as sa

revision = '0004_checkins'
down_revision = '0007_idempotency_webhooks'
branch_labels = None
depends_on = None

# As models/orders.py makes them (copied: a migration must not change when the models do).
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10


def upgrade() -> None:
    op.create_table('checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attendee_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('checked_in_by', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['attendee_id'], ['attendees.id'], name=op.f('fk_checkins_attendee_id_attendees'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_checkins_event_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins')),
    sa.UniqueConstraint('attendee_id', name=op.f('uq_checkins_attendee_id'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkins_event_id'), ['event_id'], unique=False)

    with op.batch_alter_table('attendees', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code', sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_attendees_code'), ['code'])
    # Tickets issued before this version get a code too, so every ticket can be typed in at the door.
    attendees = sa.table('attendees', sa.column('id', sa.Integer), sa.column('code', sa.String))
    conn = op.get_bind()
    ids = conn.scalars(sa.select(attendees.c.id).where(attendees.c.code.is_(None))).all()
    for start in range(0, len(ids), 1000):
        conn.execute(attendees.update().where(attendees.c.id == sa.bindparam('row_id')),
                     [{'row_id': row_id, 'code': ''.join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))}
                      for row_id in ids[start:start + 1000]])


def downgrade() -> None:
    with op.batch_alter_table('attendees', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_attendees_code'), type_='unique')
        batch_op.drop_column('code')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkins_event_id'))
    op.drop_table('checkins')
