"""reconcile: drop the unused index on recon_matches.event_id

Revision ID: 0008
Revises: 0007

No query looks matches up by callback: a day's claimed callbacks are read by account and
day (``ix_recon_matches_account_day``), and the table has no foreign key to
``payment_events`` that a delete would check. The index only cost its upkeep: a random
insert per match, a sixth of what writing a night's matches costs on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_recon_matches_event_id", table_name="recon_matches")


def downgrade() -> None:
    op.create_index("ix_recon_matches_event_id", "recon_matches", ["event_id"], unique=False)
