"""Tables for callbacks: channels and their sealed secrets, the inbox, payment events.

- ``channels``: one adapter bound to a collection account (or gateway merchant), with a
  ``version`` bumped by every change; ``channel_secrets``: its credentials, sealed
  (Fernet), several active during rotation.
- ``callback_inbox``: every request received under ``/callbacks/``, committed before any
  processing so nothing received is ever lost; ``state`` says what became of it.
- ``payment_events``: payments reported by gateways and bank pushes, unique on
  (adapter, provider_txn_id, status) — the idempotency key lives in the database. ``flags``
  holds the reasons reconciliation must look (comma-separated :class:`PaymentFlag`
  values, empty when clean); ``applied`` says the amount was added to the reference.
- ``gateway_orders``: orders opened at a gateway that only calls back on success
  (ZaloPay), so the poller knows what to ask about.

Migration: ``migrations/versions/0002_callbacks.py``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from feepay.storage.base import Base

INBOX_STATES = ("received", "processed", "ignored", "rejected")
EVENT_STATUSES = ("success", "failed", "pending")
ORDER_STATES = ("open", "paid", "failed", "expired")


class ChannelRow(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    adapter: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("collection_accounts.id"))
    merchant_id: Mapped[str | None] = mapped_column(String(80))
    settings: Mapped[str] = mapped_column(Text, default="{}")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    # bumped by every change of the channel or its secrets: in-process caches of the
    # decrypted credentials are valid only for the version they were read at
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class ChannelSecretRow(Base):
    __tablename__ = "channel_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"),
                                            index=True)
    name: Mapped[str] = mapped_column(String(40))
    value_enc: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))  # keyed blind index of the value
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class InboxRow(Base):
    __tablename__ = "callback_inbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    adapter: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(60))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(300))
    query_string: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[str] = mapped_column(Text, default="{}")
    # headers that carry a credential (an API key), Fernet-sealed as one JSON object
    sealed_headers: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    body_size: Mapped[int] = mapped_column(default=0)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10), default="received")
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[datetime | None]
    event_id: Mapped[int | None]

    __table_args__ = (
        CheckConstraint("state IN ('received','processed','ignored','rejected')",
                        name="state"),
        Index("ix_callback_inbox_state", "state", "id"),  # replay scans unprocessed rows
        Index("ix_callback_inbox_received_at", "received_at"),
    )


class PaymentEventRow(Base):
    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    adapter: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("collection_accounts.id"))
    # '' when the provider's transaction ids are unique provider-wide (gateways); the
    # channel id when they are unique only per source account (banks) — see recording
    txn_scope: Mapped[str] = mapped_column(String(20), default="", server_default="")
    provider_txn_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))
    reference_id: Mapped[int | None] = mapped_column(ForeignKey("payment_references.id"),
                                                     index=True)
    reference_code: Mapped[str | None] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[int]
    paid_at: Mapped[datetime] = mapped_column(index=True)
    memo: Mapped[str | None] = mapped_column(Text)
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_account: Mapped[str | None] = mapped_column(String(40))
    account_number: Mapped[str | None] = mapped_column(String(40))
    bank_ref: Mapped[str | None] = mapped_column(String(100))
    flags: Mapped[str] = mapped_column(String(200), default="")
    applied: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime]
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("callback_inbox.id"))
    raw: Mapped[str] = mapped_column(Text, default="{}")

    __table_args__ = (
        UniqueConstraint("adapter", "txn_scope", "provider_txn_id", "status"),
        CheckConstraint("status IN ('success','failed','pending')", name="status"),
        Index("ix_payment_events_account_paid", "account_id", "paid_at"),
    )


class GatewayOrderRow(Base):
    __tablename__ = "gateway_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    order_id: Mapped[str] = mapped_column(String(100))
    reference_code: Mapped[str | None] = mapped_column(String(16))
    amount: Mapped[int]
    state: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    polled_at: Mapped[datetime | None]
    polls: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        UniqueConstraint("channel_id", "order_id"),
        CheckConstraint("state IN ('open','paid','failed','expired')", name="state"),
        Index("ix_gateway_orders_state", "state", "channel_id"),
    )


def _register_sealed() -> None:
    from feepay import crypto

    entry = (ChannelSecretRow, "value_enc")
    if entry not in crypto.SEALED_COLUMNS:
        crypto.SEALED_COLUMNS.append(entry)
    if (InboxRow, "sealed_headers") not in crypto.SEALED_COLUMNS:
        crypto.SEALED_COLUMNS.append((InboxRow, "sealed_headers"))
    if not any(cls is ChannelSecretRow for cls, *_ in crypto.BLIND_INDEXES):
        crypto.BLIND_INDEXES.append(
            (ChannelSecretRow, "fingerprint", lambda row, sealer: sealer.open(row.value_enc)))


_register_sealed()
