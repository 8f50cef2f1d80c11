"""Tables for imported bank statements and gateway settlement files (migration 0003).

- ``statement_imports``: one row per import run (file name, SHA-256, who/when, counts).
- ``statement_lines``: one row per distinct bank line. Exact de-duplication is the unique
  constraint on (account, fingerprint, occurrence); see :mod:`feepay.statements` for how
  the fingerprint and the occurrence counter are computed.
- ``settlement_batches`` / ``settlement_transactions``: a gateway's settlement batches
  (one bank credit each) and the transactions they pay out. Unique on the provider's ids.

Money is BIGINT VND. ``statement_lines.amount`` is never negative; ``direction`` carries
the sign. Settlement amounts are signed (refunds are negative) with net = gross − fee.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from feepay.storage.base import Base


class StatementImportRow(Base):
    """One import of one file into one collection account (also re-imports: 0 new lines)."""

    __tablename__ = "statement_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # statement | settlement
    format: Mapped[str] = mapped_column(String(60))
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    file_size: Mapped[int]
    actor: Mapped[str] = mapped_column(String(80))
    imported_at: Mapped[datetime]
    account_in_file: Mapped[str | None] = mapped_column(String(40))  # masked, as checked
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    opening_balance: Mapped[int | None]
    closing_balance: Mapped[int | None]
    credits_total: Mapped[int] = mapped_column(default=0)
    debits_total: Mapped[int] = mapped_column(default=0)
    lines_total: Mapped[int] = mapped_column(default=0)
    lines_new: Mapped[int] = mapped_column(default=0)
    lines_duplicate: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        CheckConstraint("kind IN ('statement','settlement')", name="kind"),
        CheckConstraint("lines_new + lines_duplicate = lines_total", name="counts"),
        Index("ix_statement_imports_imported_at", "imported_at"),  # the night's late files
    )


class StatementLineRow(Base):
    """A bank statement line, stored once however many files contain it."""

    __tablename__ = "statement_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    import_id: Mapped[int] = mapped_column(ForeignKey("statement_imports.id"))  # no index:
    line_no: Mapped[int]                                 # bulk-insert speed; rarely queried
    posting_date: Mapped[date] = mapped_column(Date)
    value_at: Mapped[datetime | None]
    amount: Mapped[int]
    direction: Mapped[str] = mapped_column(String(6))
    bank_ref: Mapped[str | None] = mapped_column(String(100))
    memo_raw: Mapped[str] = mapped_column(Text)
    memo_norm: Mapped[str] = mapped_column(Text)
    codes: Mapped[str] = mapped_column(String(255))  # valid reference codes, space-separated
    counterparty_name: Mapped[str | None] = mapped_column(String(200))
    counterparty_account: Mapped[str | None] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(32))
    occurrence: Mapped[int]

    __table_args__ = (
        UniqueConstraint("account_id", "fingerprint", "occurrence"),
        Index("ix_statement_lines_account_day", "account_id", "posting_date"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("direction IN ('credit','debit')", name="direction"),
        CheckConstraint("occurrence >= 1", name="occurrence_positive"),
    )


class SettlementBatchRow(Base):
    """A gateway settlement batch: what the provider paid into the account in one credit."""

    __tablename__ = "settlement_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("statement_imports.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    provider: Mapped[str] = mapped_column(String(20))
    batch_id: Mapped[str] = mapped_column(String(100))
    settled_on: Mapped[date] = mapped_column(Date)
    gross_total: Mapped[int]
    fee_total: Mapped[int]
    net_total: Mapped[int]
    txn_count: Mapped[int]

    __table_args__ = (
        UniqueConstraint("provider", "batch_id"),
        Index("ix_settlement_batches_account_day", "account_id", "settled_on"),
        # one batch per id, whatever the provider: reconciliation names batches by id (0014)
        Index("uq_settlement_batches_batch_id", "batch_id", unique=True),
    )


class SettlementTxnRow(Base):
    """One gateway transaction inside a settlement batch."""

    __tablename__ = "settlement_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_pk: Mapped[int] = mapped_column(ForeignKey("settlement_batches.id"), index=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("statement_imports.id"))
    provider: Mapped[str] = mapped_column(String(20))
    provider_txn_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))  # payment | refund
    order_ref: Mapped[str | None] = mapped_column(String(100))  # as in the file
    reference: Mapped[str | None] = mapped_column(String(16), index=True)  # valid code found
    gross: Mapped[int]
    fee: Mapped[int]
    net: Mapped[int]
    paid_at: Mapped[datetime | None]
    line_no: Mapped[int]

    __table_args__ = (
        UniqueConstraint("provider", "provider_txn_id", "kind"),
        CheckConstraint("kind IN ('payment','refund')", name="kind"),
        CheckConstraint("net = gross - fee", name="net_is_gross_minus_fee"),
    )


__all__ = ["SettlementBatchRow", "SettlementTxnRow", "StatementImportRow", "StatementLineRow"]
