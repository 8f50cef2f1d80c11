"""core: units, users, accounts, fee items, references, audit log

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 04:41:58.712448
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('object_id', sa.String(length=80), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_log_hash'))
    )
    op.create_table('fee_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('procedure_code', sa.String(length=20), nullable=False),
    sa.Column('fee_code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('retention_bp', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_to', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind = 'phi' OR retention_bp = 0", name=op.f('ck_fee_items_le_phi_no_retention')),
    sa.CheckConstraint("kind IN ('phi','le_phi')", name=op.f('ck_fee_items_kind')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_fee_items_amount_positive')),
    sa.CheckConstraint('retention_bp BETWEEN 0 AND 10000', name=op.f('ck_fee_items_retention_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fee_items')),
    sa.UniqueConstraint('fee_code', 'effective_from', name=op.f('uq_fee_items_fee_code_effective_from'))
    )
    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fee_items_procedure_code'), ['procedure_code'], unique=False)

    op.create_table('units',
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('parent_code', sa.String(length=20), nullable=True),
    sa.Column('successor_code', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('province','commune','department','other')", name=op.f('ck_units_kind')),
    sa.ForeignKeyConstraint(['parent_code'], ['units.code'], name=op.f('fk_units_parent_code_units')),
    sa.ForeignKeyConstraint(['successor_code'], ['units.code'], name=op.f('fk_units_successor_code_units')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_units'))
    )
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_units_parent_code'), ['parent_code'], unique=False)

    op.create_table('collection_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('unit_code', sa.String(length=20), nullable=False),
    sa.Column('bank_bin', sa.String(length=6), nullable=False),
    sa.Column('number_enc', sa.Text(), nullable=False),
    sa.Column('number_last4', sa.String(length=4), nullable=False),
    sa.Column('number_length', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number_index', sa.String(length=64), nullable=False),
    sa.Column('holder_name', sa.String(length=200), nullable=False),
    sa.Column('fee_kinds', sa.String(length=20), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('cutoff', sa.String(length=5), nullable=False),
    sa.Column('verified_by', sa.String(length=80), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("fee_kinds IN ('phi','le_phi','phi,le_phi')", name=op.f('ck_collection_accounts_fee_kinds')),
    sa.CheckConstraint("state IN ('pending','verified','active','retired')", name=op.f('ck_collection_accounts_state')),
    sa.ForeignKeyConstraint(['unit_code'], ['units.code'], name=op.f('fk_collection_accounts_unit_code_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_accounts')),
    sa.UniqueConstraint('number_index', name=op.f('uq_collection_accounts_number_index'))
    )
    with op.batch_alter_table('collection_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_accounts_unit_code'), ['unit_code'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('unit_code', sa.String(length=20), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('admin','treasury','unit')", name=op.f('ck_users_role')),
    sa.ForeignKeyConstraint(['unit_code'], ['units.code'], name=op.f('fk_users_unit_code_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('payment_references',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('dossier_code', sa.String(length=80), nullable=False),
    sa.Column('items_key', sa.String(length=64), nullable=False),
    sa.Column('competent_unit', sa.String(length=20), nullable=False),
    sa.Column('receiving_unit', sa.String(length=20), nullable=True),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_due', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_paid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('memo', sa.String(length=25), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('issued','partially_paid','paid','overpaid','settled','cancelled','expired')", name=op.f('ck_payment_references_state')),
    sa.CheckConstraint('amount_due > 0', name=op.f('ck_payment_references_amount_due_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['collection_accounts.id'], name=op.f('fk_payment_references_account_id_collection_accounts')),
    sa.ForeignKeyConstraint(['competent_unit'], ['units.code'], name=op.f('fk_payment_references_competent_unit_units')),
    sa.ForeignKeyConstraint(['receiving_unit'], ['units.code'], name=op.f('fk_payment_references_receiving_unit_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_references')),
    sa.UniqueConstraint('code', name=op.f('uq_payment_references_code'))
    )
    with op.batch_alter_table('payment_references', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_references_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_references_competent_unit'), ['competent_unit'], unique=False)
        batch_op.create_index('ix_payment_references_dossier', ['dossier_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_references_issued_at'), ['issued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_references_state'), ['state'], unique=False)
        batch_op.create_index('uq_payment_references_live', ['dossier_code', 'items_key'], unique=True, sqlite_where=sa.text("state <> 'cancelled'"), postgresql_where=sa.text("state <> 'cancelled'"))

    op.create_table('reference_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reference_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('fee_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('fee_code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('retention_bp', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['fee_item_id'], ['fee_items.id'], name=op.f('fk_reference_items_fee_item_id_fee_items')),
    sa.ForeignKeyConstraint(['reference_id'], ['payment_references.id'], name=op.f('fk_reference_items_reference_id_payment_references'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reference_items'))
    )
    with op.batch_alter_table('reference_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reference_items_reference_id'), ['reference_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('reference_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reference_items_reference_id'))

    op.drop_table('reference_items')
    with op.batch_alter_table('payment_references', schema=None) as batch_op:
        batch_op.drop_index('uq_payment_references_live', sqlite_where=sa.text("state <> 'cancelled'"), postgresql_where=sa.text("state <> 'cancelled'"))
        batch_op.drop_index(batch_op.f('ix_payment_references_state'))
        batch_op.drop_index(batch_op.f('ix_payment_references_issued_at'))
        batch_op.drop_index('ix_payment_references_dossier')
        batch_op.drop_index(batch_op.f('ix_payment_references_competent_unit'))
        batch_op.drop_index(batch_op.f('ix_payment_references_account_id'))

    op.drop_table('payment_references')
    op.drop_table('users')
    with op.batch_alter_table('collection_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_accounts_unit_code'))

    op.drop_table('collection_accounts')
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_units_parent_code'))

    op.drop_table('units')
    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fee_items_procedure_code'))

    op.drop_table('fee_items')
    op.drop_table('audit_log')

