# ruff: noqa: E501 - generated DDL reads best one column per line
"""reconcile: runs, matches, mismatches, resolutions

Revision ID: 0004
Revises: 0003

A mismatch is unique on (account_id, key): re-running a day finds the same row and keeps
its resolution. Matches are one row per allocation (see feepay/storage/tables_reconcile.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('recon_runs',
    sa.Column('id', BIG, nullable=False),
    sa.Column('account_id', BIG, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('attempt', BIG, nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('engine_version', sa.String(length=10), nullable=False),
    sa.Column('started_at', STAMP, nullable=False),
    sa.Column('finished_at', STAMP, nullable=False),
    sa.Column('lines', BIG, nullable=False),
    sa.Column('matches', BIG, nullable=False),
    sa.Column('mismatches', BIG, nullable=False),
    sa.Column('statement_credits', BIG, nullable=False),
    sa.Column('matched_amount', BIG, nullable=False),
    sa.Column('held_amount', BIG, nullable=False),
    sa.Column('result_digest', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('balanced','unbalanced','failed')", name=op.f('ck_recon_runs_status')),
    sa.ForeignKeyConstraint(['account_id'], ['collection_accounts.id'], name=op.f('fk_recon_runs_account_id_collection_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_runs')),
    sa.UniqueConstraint('account_id', 'day', 'attempt', name=op.f('uq_recon_runs_account_id_day_attempt'))
    )
    op.create_index('ix_recon_runs_day', 'recon_runs', ['day'], unique=False)
    op.create_table('recon_matches',
    sa.Column('id', BIG, nullable=False),
    sa.Column('run_id', BIG, nullable=False),
    sa.Column('account_id', BIG, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('match_key', sa.String(length=160), nullable=False),
    sa.Column('rule', sa.String(length=16), nullable=False),
    sa.Column('line_id', BIG, nullable=True),
    sa.Column('line_day', sa.Date(), nullable=True),
    sa.Column('reference_id', BIG, nullable=True),
    sa.Column('event_id', BIG, nullable=True),
    sa.Column('batch_id', sa.String(length=100), nullable=True),
    sa.Column('txn_id', sa.String(length=100), nullable=True),
    sa.Column('amount', BIG, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['collection_accounts.id'], name=op.f('fk_recon_matches_account_id_collection_accounts')),
    sa.ForeignKeyConstraint(['run_id'], ['recon_runs.id'], name=op.f('fk_recon_matches_run_id_recon_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_matches'))
    )
    op.create_index('ix_recon_matches_account_day', 'recon_matches', ['account_id', 'day'], unique=False)
    op.create_index('ix_recon_matches_event_id', 'recon_matches', ['event_id'], unique=False)
    op.create_index('ix_recon_matches_reference_id', 'recon_matches', ['reference_id'], unique=False)
    op.create_table('recon_mismatches',
    sa.Column('id', BIG, nullable=False),
    sa.Column('account_id', BIG, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('category', sa.String(length=24), nullable=False),
    sa.Column('amount', BIG, nullable=False),
    sa.Column('expected_amount', BIG, nullable=True),
    sa.Column('line_id', BIG, nullable=True),
    sa.Column('line_day', sa.Date(), nullable=True),
    sa.Column('event_id', BIG, nullable=True),
    sa.Column('batch_id', sa.String(length=100), nullable=True),
    sa.Column('reference_code', sa.String(length=16), nullable=True),
    sa.Column('suggested', sa.String(length=255), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('first_run_id', BIG, nullable=False),
    sa.Column('run_id', BIG, nullable=False),
    sa.Column('status', sa.String(length=14), nullable=False),
    sa.Column('resolution', sa.String(length=14), nullable=True),
    sa.Column('resolution_reason', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=80), nullable=True),
    sa.Column('resolved_at', STAMP, nullable=True),
    sa.Column('linked_reference', sa.String(length=16), nullable=True),
    sa.Column('cleared_day', sa.Date(), nullable=True),
    sa.Column('created_at', STAMP, nullable=False),
    sa.Column('updated_at', STAMP, nullable=False),
    sa.CheckConstraint("resolution IS NULL OR resolution IN ('link','refund_due','write_off','carry_over','acknowledge')", name=op.f('ck_recon_mismatches_resolution')),
    sa.CheckConstraint("status IN ('open','carried_over','resolved','cleared','superseded')", name=op.f('ck_recon_mismatches_status')),
    sa.ForeignKeyConstraint(['account_id'], ['collection_accounts.id'], name=op.f('fk_recon_mismatches_account_id_collection_accounts')),
    sa.ForeignKeyConstraint(['event_id'], ['payment_events.id'], name=op.f('fk_recon_mismatches_event_id_payment_events')),
    sa.ForeignKeyConstraint(['first_run_id'], ['recon_runs.id'], name=op.f('fk_recon_mismatches_first_run_id_recon_runs')),
    sa.ForeignKeyConstraint(['line_id'], ['statement_lines.id'], name=op.f('fk_recon_mismatches_line_id_statement_lines')),
    sa.ForeignKeyConstraint(['run_id'], ['recon_runs.id'], name=op.f('fk_recon_mismatches_run_id_recon_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_mismatches')),
    sa.UniqueConstraint('account_id', 'key', name=op.f('uq_recon_mismatches_account_id_key'))
    )
    op.create_index('ix_recon_mismatches_account_day', 'recon_mismatches', ['account_id', 'day'], unique=False)
    op.create_index('ix_recon_mismatches_reference_code', 'recon_mismatches', ['reference_code'], unique=False)
    op.create_index('ix_recon_mismatches_status', 'recon_mismatches', ['status', 'category'], unique=False)
    op.create_table('recon_resolutions',
    sa.Column('id', BIG, nullable=False),
    sa.Column('mismatch_id', BIG, nullable=False),
    sa.Column('action', sa.String(length=14), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('at', STAMP, nullable=False),
    sa.Column('reference_code', sa.String(length=16), nullable=True),
    sa.Column('audit_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint("action IN ('link','refund_due','write_off','carry_over','acknowledge')", name=op.f('ck_recon_resolutions_action')),
    sa.ForeignKeyConstraint(['mismatch_id'], ['recon_mismatches.id'], name=op.f('fk_recon_resolutions_mismatch_id_recon_mismatches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_resolutions'))
    )
    op.create_index(op.f('ix_recon_resolutions_mismatch_id'), 'recon_resolutions', ['mismatch_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_recon_resolutions_mismatch_id"), table_name="recon_resolutions")
    op.drop_table("recon_resolutions")
    for name in ("ix_recon_mismatches_status", "ix_recon_mismatches_reference_code",
                 "ix_recon_mismatches_account_day"):
        op.drop_index(name, table_name="recon_mismatches")
    op.drop_table("recon_mismatches")
    for name in ("ix_recon_matches_reference_id",
                 "ix_recon_matches_event_id", "ix_recon_matches_account_day"):
        op.drop_index(name, table_name="recon_matches")
    op.drop_table("recon_matches")
    op.drop_index("ix_recon_runs_day", table_name="recon_runs")
    op.drop_table("recon_runs")
