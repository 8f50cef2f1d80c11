"""reconcile: what the scheduler needs to re-run exactly the days that changed

Revision ID: 0011
Revises: 0010

* ``recon_runs.batches_seen``: the scheduler re-runs an account-day when storage no longer
  holds what its last run read. For settlement batches it compared import times with the
  run's start; an import still committing while the run read was stamped earlier and
  could be missed. A run now keeps a fingerprint of the batches it read (ids, imports,
  totals). Runs stored before this revision have none: each such day within the
  scheduler's window is run once more.
* ``recon_stale_days``: a run that changes what an earlier day decided about references
  that later days also name (a late statement, a correction, a link) marks those later
  account-days, in its own transaction; the nightly job runs them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("recon_runs") as batch:
        batch.add_column(sa.Column("batches_seen", sa.String(length=64), nullable=True))
    op.create_table(
        "recon_stale_days",
        sa.Column("id", BIG, nullable=False),
        sa.Column("account_id", BIG, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("by_run_id", BIG, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["collection_accounts.id"],
            name=op.f("fk_recon_stale_days_account_id_collection_accounts")),
        sa.ForeignKeyConstraint(["by_run_id"], ["recon_runs.id"],
                                name=op.f("fk_recon_stale_days_by_run_id_recon_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_stale_days")),
    )
    op.create_index(op.f("ix_recon_stale_days_account_day"), "recon_stale_days",
                    ["account_id", "day"])


def downgrade() -> None:
    op.drop_index(op.f("ix_recon_stale_days_account_day"), table_name="recon_stale_days")
    op.drop_table("recon_stale_days")
    with op.batch_alter_table("recon_runs") as batch:
        batch.drop_column("batches_seen")
