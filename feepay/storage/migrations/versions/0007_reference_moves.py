"""reconcile: reference moves queued by runs, applied once per night

Revision ID: 0007
Revises: 0006

A run no longer rewrites ``payment_references`` inside its own transaction: it queues the
states it asks for in ``recon_reference_moves`` (one narrow row per reference), and
:mod:`reconcile.moves` applies every queued move in one pass — after the night's last
account-day, or right after a single run. Rewriting the references once instead of once
per account-day is most of what the night's writes cost on SQLite (each account-day's
references are spread over every page of the table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recon_reference_moves",
        sa.Column("id", BIG, nullable=False),
        sa.Column("run_id", BIG, nullable=False),
        sa.Column("reference_id", BIG, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("allocated", BIG, nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('settled','partially_paid')",
                           name=op.f("ck_recon_reference_moves_state")),
        sa.ForeignKeyConstraint(["run_id"], ["recon_runs.id"],
                                name=op.f("fk_recon_reference_moves_run_id_recon_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_reference_moves")),
    )


def downgrade() -> None:
    # moves still queued are applied first: dropping them would lose settled states
    from feepay.money import now_utc
    from reconcile.moves import apply

    apply(op.get_bind(), now_utc())
    op.drop_table("recon_reference_moves")
