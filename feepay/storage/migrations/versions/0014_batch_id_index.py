"""statements: a settlement batch id names one batch, whatever the provider

Revision ID: 0014
Revises: 0013

Reconciliation tells gateway batches apart by their id alone (a match, a held part, a
claimed batch name it without the provider), so ``batch_id`` becomes unique across
providers: the settlement import refuses a batch whose id another provider already used
(``feepay.statements._check_batch_id_free``), and this unique index decides between two
imports at the same moment. A database that already holds two providers' batches under
one id cannot be upgraded until a person looks at them: the upgrade stops and names them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SHARED = """SELECT batch_id FROM settlement_batches GROUP BY batch_id
             HAVING COUNT(DISTINCT provider) > 1 ORDER BY batch_id"""


def upgrade() -> None:
    shared = [r[0] for r in op.get_bind().execute(sa.text(SHARED))]
    if shared:
        raise RuntimeError(
            "migration 0014: settlement batches of different providers share the id(s) "
            f"{', '.join(shared[:20])}; reconciliation would take them for each other. "
            "Look at those batches (and their days' reconciliation), keep one batch per id, "
            "then upgrade again (docs/operations.md).")
    op.create_index("uq_settlement_batches_batch_id", "settlement_batches", ["batch_id"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_settlement_batches_batch_id", table_name="settlement_batches")
