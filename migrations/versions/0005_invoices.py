"""Invoices fit for accounts: the seller and tax of each event, gapless invoice numbers per seller
and year, credit notes, and the payment-received email.

Revision ID: 0005_invoices
Revises: 0004_checkins
"""
from alembic import op
import sqlalchemy as sa

revision = '0005_invoices'
down_revision = '0004_checkins'
branch_labels = None
depends_on = None

EMAIL_KINDS = ('confirmation-buyer', 'confirmation-attendee', 'organizer-notification', 'cancellation')
DOCUMENT_KINDS = ('tickets', 'attendee-ticket', 'invoice')


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seller_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('seller_address', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('seller_country', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('seller_vat_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('tax_rate', sa.Numeric(precision=5, scale=2), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('prices_include_tax', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('bank_details', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('cheque_details', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('contact_email', sa.String(length=254), nullable=True))

    op.create_table('invoice_series',
    sa.Column('seller', sa.String(length=64), nullable=False),
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('seller', 'year', name=op.f('pk_invoice_series'))
    )
    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('invoice', 'credit-note', name='invoice_kind', native_enum=False,
                              create_constraint=True, length=16), nullable=False),
    sa.Column('seller', sa.String(length=64), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('net', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('tax', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('gross', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('cites_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cites_id'], ['invoices.id'], name=op.f('fk_invoices_cites_id_invoices'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_invoices_order_id_orders'),
                            ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('order_id', 'kind', name='uq_invoices_order_kind'),
    sa.UniqueConstraint('seller', 'year', 'sequence', name='uq_invoices_seller_year_sequence')
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoices_order_id'), ['order_id'], unique=False)

    # New values of two string enums: their CHECK constraints are replaced.
    with op.batch_alter_table('email_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_email_deliveries_email_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_email_deliveries_email_kind'),
                                         _in('kind', (*EMAIL_KINDS, 'payment-received')))
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_documents_document_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_documents_document_kind'),
                                         _in('kind', (*DOCUMENT_KINDS, 'credit-note')))


def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_documents_document_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_documents_document_kind'), _in('kind', DOCUMENT_KINDS))
    with op.batch_alter_table('email_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_email_deliveries_email_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_email_deliveries_email_kind'), _in('kind', EMAIL_KINDS))
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoices_order_id'))
    op.drop_table('invoices')
    op.drop_table('invoice_series')
    with op.batch_alter_table('events', schema=None) as batch_op:
        for column in ('contact_email', 'cheque_details', 'bank_details', 'prices_include_tax', 'tax_rate',
                       'seller_vat_id', 'seller_country', 'seller_address', 'seller_name'):
            batch_op.drop_column(column)
