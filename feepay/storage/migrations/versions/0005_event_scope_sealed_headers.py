"""callbacks: idempotency per source account for banks; credential headers sealed

Revision ID: 0005
Revises: 0004

``payment_events.txn_scope``: bank transaction ids (SePay, Casso, a bank's own webhook)
are unique only within one source account, so two banks sending the same ``id`` must not
collide; the idempotency key becomes (adapter, txn_scope, provider_txn_id, status), where
txn_scope is '' for gateways (ids unique provider-wide) and the channel id for banks.
Existing events of the built-in bank adapters get their channel id as scope (so a bank's
retry of a payment recorded before the upgrade is still a duplicate); every other row
gets '' — the old key. A third-party bank adapter's events need the same update by hand.

``callback_inbox.sealed_headers``: headers that carry a credential (``Authorization:
Apikey …``) are no longer kept in clear in ``headers``; they are Fernet-sealed here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_KEY = "uq_payment_events_adapter_provider_txn_id_status"
BANK_ADAPTERS = ("sepay", "casso", "bankhook")  # the built-in adapters of kind "bank"
NEW_KEY = "uq_payment_events_adapter_txn_scope_provider_txn_id_status"


def upgrade() -> None:
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("txn_scope", sa.String(length=20), nullable=False,
                                      server_default=""))
    op.execute(sa.text(
        "UPDATE payment_events SET txn_scope = CAST(channel_id AS VARCHAR(20)) "
        "WHERE channel_id IS NOT NULL AND adapter IN :banks"
    ).bindparams(sa.bindparam("banks", BANK_ADAPTERS, expanding=True)))
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_constraint(OLD_KEY, type_="unique")
        batch_op.create_unique_constraint(
            NEW_KEY, ["adapter", "txn_scope", "provider_txn_id", "status"])
    with op.batch_alter_table("callback_inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_headers", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback_inbox", schema=None) as batch_op:
        batch_op.drop_column("sealed_headers")
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_constraint(NEW_KEY, type_="unique")
        batch_op.create_unique_constraint(OLD_KEY, ["adapter", "provider_txn_id", "status"])
        batch_op.drop_column("txn_scope")
