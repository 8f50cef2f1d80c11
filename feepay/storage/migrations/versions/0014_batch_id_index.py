"""statements: an index on settlement_batches.batch_id

Revision ID: 0014
Revises: 0013

Reconciliation tells gateway batches apart by their id alone (a match, a held part, a
claimed batch name it without the provider), so the settlement import refuses a batch
whose id another provider already used (``feepay.statements._check_batch_id_free``).
The unique key ``(provider, batch_id)`` cannot answer "any other provider?" without
reading every batch stored; this index can.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_settlement_batches_batch_id", "settlement_batches", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_settlement_batches_batch_id", table_name="settlement_batches")
