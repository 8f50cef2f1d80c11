"""reconcile: indexes for the questions a night asks of all history

Revision ID: 0012
Revises: 0011

* ``batch_id`` on ``recon_matches`` and ``recon_mismatches``: each account-day with
  gateway batches asks whether an earlier day already placed them
  (``reconcile.loader._claimed_batches``). Without an index that read every match and
  mismatch ever stored, once per account-day: on a province's night of 60 accounts a
  tenth of the run, and growing with history. Partial: only gateway rows carry a batch.
* ``run_id`` on ``recon_mismatches``: the sum check adds up the money its run holds
  (``reconcile.persist.sums``), which also read the whole table.
* ``(account_id, status, cleared_day)`` on ``recon_mismatches``: a run clears the
  account's open rows and reopens what it cleared before, which read every row the
  account ever had.
* ``imported_at`` on ``statement_imports``: the night looks for files imported since its
  window (``Reconciler.imported_days``).

``tests/reconcile/test_query_plans.py`` checks that no statement of a night scans a big
table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WITH_BATCH = sa.text("batch_id IS NOT NULL")


def upgrade() -> None:
    for table in ("recon_matches", "recon_mismatches"):
        op.create_index(f"ix_{table}_batch_id", table, ["batch_id"],
                        sqlite_where=WITH_BATCH, postgresql_where=WITH_BATCH)
    op.create_index("ix_recon_mismatches_run_id", "recon_mismatches", ["run_id"])
    op.create_index("ix_recon_mismatches_account_status", "recon_mismatches",
                    ["account_id", "status", "cleared_day"])
    op.create_index("ix_statement_imports_imported_at", "statement_imports", ["imported_at"])


def downgrade() -> None:
    op.drop_index("ix_statement_imports_imported_at", table_name="statement_imports")
    op.drop_index("ix_recon_mismatches_account_status", table_name="recon_mismatches")
    op.drop_index("ix_recon_mismatches_run_id", table_name="recon_mismatches")
    for table in ("recon_matches", "recon_mismatches"):
        op.drop_index(f"ix_{table}_batch_id", table_name=table)
