"""reconcile: the callbacks an earlier day's mismatches hold, found by callback

Revision ID: 0015
Revises: 0014

Each account-day leaves out the callbacks an earlier day already paired, and a mismatch
(a part held, a duplicate, an overpayment…) pairs one too. Until now the loader found
those by reading every mismatch the account ever had (``reconcile.loader._claimed_events``:
no day bound is exact, since a carried part keeps its old day when a later day gives it a
new callback): a read that grows by a night's mismatches every night. With this index it
asks only about the callbacks the day loaded. Partial: most mismatches name no callback.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

WITH_EVENT = sa.text("event_id IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_recon_mismatches_event_id", "recon_mismatches", ["event_id"],
                    sqlite_where=WITH_EVENT, postgresql_where=WITH_EVENT)


def downgrade() -> None:
    op.drop_index("ix_recon_mismatches_event_id", table_name="recon_mismatches")
