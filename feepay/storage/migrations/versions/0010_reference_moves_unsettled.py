"""reconcile: a re-run can move a settled reference back (queued move ``unsettled``)

Revision ID: 0010
Revises: 0009

When a re-run of an account-day no longer matches money to a reference that an earlier
run of the day settled (a corrected settlement file moved its transaction, say), and no
other day pays it, the reference no longer stays ``settled`` with nothing behind it: the
run queues a move ``unsettled`` and :func:`reconcile.moves.apply` gives the reference back
the state its applied callbacks say (``issued``/``expired``, ``partially_paid``, ``paid``
or ``overpaid``). The queue's CHECK constraint accepts the new state.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ck_recon_reference_moves_state"  # "state" under the naming convention (0007)
OLD = "state IN ('settled','partially_paid')"
NEW = "state IN ('settled','partially_paid','unsettled')"


def _replace_check(condition: str) -> None:
    """Swap the queue's CHECK constraint (SQLite: by re-creating the table, batch mode)."""
    with op.batch_alter_table("recon_reference_moves") as batch:
        batch.drop_constraint(op.f(NAME), type_="check")
        batch.create_check_constraint(op.f(NAME), condition)


def upgrade() -> None:
    _replace_check(NEW)


def downgrade() -> None:
    # applying them here would move references back without their audit entries, and
    # dropping them would leave references settled with no money behind them
    queued = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM recon_reference_moves WHERE state = 'unsettled'")).scalar()
    if queued:
        raise RuntimeError(f"{queued} reference move(s) back from settled are still queued; "
                           "revision 0009 cannot hold them: apply them first (`feepay "
                           "reconcile --apply-queued`), then downgrade")
    _replace_check(OLD)
