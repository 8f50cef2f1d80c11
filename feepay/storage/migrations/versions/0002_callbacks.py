"""callbacks: channels, channel secrets, inbox, payment events, gateway orders

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("adapter", sa.String(length=40), nullable=False),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("merchant_id", sa.String(length=80), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", ID, nullable=False, server_default="1"),
        sa.ForeignKeyConstraint(["account_id"], ["collection_accounts.id"],
                                name=op.f("fk_channels_account_id_collection_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("name", name=op.f("uq_channels_name")),
    )
    op.create_table(
        "channel_secrets",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], ondelete="CASCADE",
                                name=op.f("fk_channel_secrets_channel_id_channels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_secrets")),
    )
    with op.batch_alter_table("channel_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channel_secrets_channel_id"), ["channel_id"],
                              unique=False)

    op.create_table(
        "callback_inbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("adapter", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=60), nullable=False),
        sa.Column("channel_id", ID, nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("query_string", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_size", ID, nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", ID, nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("event_id", ID, nullable=True),
        sa.CheckConstraint("state IN ('received','processed','ignored','rejected')",
                           name=op.f("ck_callback_inbox_state")),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"],
                                name=op.f("fk_callback_inbox_channel_id_channels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_inbox")),
    )
    with op.batch_alter_table("callback_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_callback_inbox_received_at", ["received_at"], unique=False)
        batch_op.create_index("ix_callback_inbox_state", ["state", "id"], unique=False)

    op.create_table(
        "payment_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("adapter", sa.String(length=40), nullable=False),
        sa.Column("channel_id", ID, nullable=True),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("provider_txn_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reference_id", ID, nullable=True),
        sa.Column("reference_code", sa.String(length=16), nullable=True),
        sa.Column("order_id", sa.String(length=100), nullable=True),
        sa.Column("amount", ID, nullable=False),
        sa.Column("paid_at", TS, nullable=False),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("payer_name", sa.String(length=200), nullable=True),
        sa.Column("payer_account", sa.String(length=40), nullable=True),
        sa.Column("account_number", sa.String(length=40), nullable=True),
        sa.Column("bank_ref", sa.String(length=100), nullable=True),
        sa.Column("flags", sa.String(length=200), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("inbox_id", ID, nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.CheckConstraint("status IN ('success','failed','pending')",
                           name=op.f("ck_payment_events_status")),
        sa.ForeignKeyConstraint(["account_id"], ["collection_accounts.id"],
                                name=op.f("fk_payment_events_account_id_collection_accounts")),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"],
                                name=op.f("fk_payment_events_channel_id_channels")),
        sa.ForeignKeyConstraint(["inbox_id"], ["callback_inbox.id"],
                                name=op.f("fk_payment_events_inbox_id_callback_inbox")),
        sa.ForeignKeyConstraint(
            ["reference_id"], ["payment_references.id"],
            name=op.f("fk_payment_events_reference_id_payment_references")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_events")),
        sa.UniqueConstraint("adapter", "provider_txn_id", "status",
                            name=op.f("uq_payment_events_adapter_provider_txn_id_status")),
    )
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.create_index("ix_payment_events_account_paid", ["account_id", "paid_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_payment_events_channel_id"), ["channel_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_payment_events_paid_at"), ["paid_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_payment_events_reference_id"), ["reference_id"],
                              unique=False)

    op.create_table(
        "gateway_orders",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("order_id", sa.String(length=100), nullable=False),
        sa.Column("reference_code", sa.String(length=16), nullable=True),
        sa.Column("amount", ID, nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("polled_at", TS, nullable=True),
        sa.Column("polls", ID, nullable=False),
        sa.CheckConstraint("state IN ('open','paid','failed','expired')",
                           name=op.f("ck_gateway_orders_state")),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"],
                                name=op.f("fk_gateway_orders_channel_id_channels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_orders")),
        sa.UniqueConstraint("channel_id", "order_id",
                            name=op.f("uq_gateway_orders_channel_id_order_id")),
    )
    with op.batch_alter_table("gateway_orders", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_orders_state", ["state", "channel_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_orders_state")
    op.drop_table("gateway_orders")
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_events_reference_id"))
        batch_op.drop_index(batch_op.f("ix_payment_events_paid_at"))
        batch_op.drop_index(batch_op.f("ix_payment_events_channel_id"))
        batch_op.drop_index("ix_payment_events_account_paid")
    op.drop_table("payment_events")
    with op.batch_alter_table("callback_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_callback_inbox_state")
        batch_op.drop_index("ix_callback_inbox_received_at")
    op.drop_table("callback_inbox")
    with op.batch_alter_table("channel_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_secrets_channel_id"))
    op.drop_table("channel_secrets")
    op.drop_table("channels")
