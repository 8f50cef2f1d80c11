"""reconcile: a reviewer can link an ambiguous gateway credit to its batch

Revision ID: 0009
Revises: 0008

When two credit lines fit one settlement batch (or one line fits two), the engine holds
them as ``ambiguous`` rather than guess. The reviewer's decision — this line is that
batch — is kept beside the mismatch, as a link to a reference is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recon_mismatches") as batch:
        batch.add_column(sa.Column("linked_batch", sa.String(length=100), nullable=True))


def downgrade() -> None:
    # a person's decisions would be lost, and their lines held again under resolved rows
    linked = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM recon_mismatches WHERE linked_batch IS NOT NULL")).scalar()
    if linked:
        raise RuntimeError(f"{linked} mismatch(es) are linked to a settlement batch; "
                           "revision 0008 cannot keep those decisions: not downgrading")
    with op.batch_alter_table("recon_mismatches") as batch:
        batch.drop_column("linked_batch")
