"""references: no index rewritten when the nightly run settles a reference

Revision ID: 0006
Revises: 0005

The nightly run moves nearly every reference ``paid → settled``. ``ix_payment_references_
state`` and the partial unique index ``uq_payment_references_live`` (``WHERE state <>
'cancelled'``) both hold ``state``, so each such update rewrote an entry of each, on a
random page. Now:

* ``uq_payment_references_live`` is ``WHERE cancelled_at IS NULL`` — the same rows, since
  a CHECK now ties ``cancelled_at`` to the ``cancelled`` state;
* ``ix_payment_references_state`` is replaced by ``ix_payment_references_issued_expiry``
  (``expires_at WHERE state = 'issued'``), which serves the expiry sweep and contains no
  paid or settled reference.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHECK = "ck_payment_references_cancelled_at_iff_cancelled"


def upgrade() -> None:
    op.execute("UPDATE payment_references SET cancelled_at = COALESCE(issued_at, "
               "CURRENT_TIMESTAMP) WHERE state = 'cancelled' AND cancelled_at IS NULL")
    op.execute("UPDATE payment_references SET cancelled_at = NULL "
               "WHERE state <> 'cancelled' AND cancelled_at IS NOT NULL")
    with op.batch_alter_table("payment_references", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_references_state")
        batch_op.drop_index("uq_payment_references_live")
        batch_op.create_index(
            "uq_payment_references_live", ["dossier_code", "items_key"], unique=True,
            sqlite_where=sa.text("cancelled_at IS NULL"),
            postgresql_where=sa.text("cancelled_at IS NULL"))
        batch_op.create_index(
            "ix_payment_references_issued_expiry", ["expires_at"], unique=False,
            sqlite_where=sa.text("state = 'issued'"),
            postgresql_where=sa.text("state = 'issued'"))
        batch_op.create_check_constraint(
            op.f(CHECK), "(state = 'cancelled') = (cancelled_at IS NOT NULL)")


def downgrade() -> None:
    with op.batch_alter_table("payment_references", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CHECK), type_="check")
        batch_op.drop_index("ix_payment_references_issued_expiry")
        batch_op.drop_index("uq_payment_references_live")
        batch_op.create_index(
            "uq_payment_references_live", ["dossier_code", "items_key"], unique=True,
            sqlite_where=sa.text("state <> 'cancelled'"),
            postgresql_where=sa.text("state <> 'cancelled'"))
        batch_op.create_index("ix_payment_references_state", ["state"], unique=False)
