"""reconcile: a run remembers which settlement batches it read

Revision ID: 0011
Revises: 0010

The scheduler re-runs an account-day when storage no longer holds what its last run read.
For settlement batches it compared import times with the run's start; an import still
committing while the run read was stamped earlier and could be missed. A run now keeps a
fingerprint of the batches it read (ids, imports, totals), compared with storage's.
Runs stored before this revision have none: each such day within the scheduler's window is
run once more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recon_runs") as batch:
        batch.add_column(sa.Column("batches_seen", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recon_runs") as batch:
        batch.drop_column("batches_seen")
