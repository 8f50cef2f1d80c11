"""Core tables: units, users, collection accounts, fee items, payment references, audit log.

Other packages' tables live in their own modules in this package (``tables_*.py``) and
are imported at the bottom so that one ``Base.metadata`` describes the whole schema.
Idempotency and uniqueness are database constraints, never read-then-write checks.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from feepay.storage.base import Base


class UnitRow(Base):
    __tablename__ = "units"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"), index=True)
    successor_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("kind IN ('province','commune','department','other')", name="kind"),
    )


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    unit_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("role IN ('admin','treasury','unit')", name="role"),
    )


class AccountRow(Base):
    __tablename__ = "collection_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    bank_bin: Mapped[str] = mapped_column(String(6))
    number_enc: Mapped[str] = mapped_column(Text)
    number_last4: Mapped[str] = mapped_column(String(4))
    number_length: Mapped[int]
    number_index: Mapped[str] = mapped_column(String(64), unique=True)
    holder_name: Mapped[str] = mapped_column(String(200))
    fee_kinds: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    cutoff: Mapped[str] = mapped_column(String(5), default="23:59")
    verified_by: Mapped[str | None] = mapped_column(String(80))
    verified_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("state IN ('pending','verified','active','retired')", name="state"),
        CheckConstraint("fee_kinds IN ('phi','le_phi','phi,le_phi')", name="fee_kinds"),
    )


class FeeItemRow(Base):
    __tablename__ = "fee_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_code: Mapped[str] = mapped_column(String(20), index=True)
    fee_code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int]
    retention_bp: Mapped[int]
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("fee_code", "effective_from"),
        CheckConstraint("kind IN ('phi','le_phi')", name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("retention_bp BETWEEN 0 AND 10000", name="retention_range"),
        CheckConstraint("kind = 'phi' OR retention_bp = 0", name="le_phi_no_retention"),
    )


class ReferenceRow(Base):
    __tablename__ = "payment_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    dossier_code: Mapped[str] = mapped_column(String(80))
    items_key: Mapped[str] = mapped_column(String(64))
    competent_unit: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    receiving_unit: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"), index=True)
    amount_due: Mapped[int]
    amount_paid: Mapped[int] = mapped_column(default=0)
    # not indexed on its own: the nightly run moves ~every reference paid → settled, and an
    # index holding state would be rewritten for each (a random page per reference); the
    # one partial index naming it (issued_expiry) holds neither 'paid' nor 'settled' rows
    state: Mapped[str] = mapped_column(String(16), default="issued")
    memo: Mapped[str] = mapped_column(String(25))
    issued_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    items: Mapped[list[ReferenceItemRow]] = relationship(
        back_populates="reference", order_by="ReferenceItemRow.position", lazy="selectin")

    __table_args__ = (
        # one live reference per (dossier, items); a cancelled one frees the slot
        Index("uq_payment_references_live", "dossier_code", "items_key", unique=True,
              sqlite_where=text("cancelled_at IS NULL"),
              postgresql_where=text("cancelled_at IS NULL")),
        # the expiry sweep: unpaid references by expiry
        Index("ix_payment_references_issued_expiry", "expires_at",
              sqlite_where=text("state = 'issued'"),
              postgresql_where=text("state = 'issued'")),
        Index("ix_payment_references_dossier", "dossier_code"),
        CheckConstraint("amount_due > 0", name="amount_due_positive"),
        CheckConstraint(
            "state IN ('issued','partially_paid','paid','overpaid','settled','cancelled',"
            "'expired')", name="state"),
        CheckConstraint("(state = 'cancelled') = (cancelled_at IS NOT NULL)",
                        name="cancelled_at_iff_cancelled"),
    )


class ReferenceItemRow(Base):
    __tablename__ = "reference_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference_id: Mapped[int] = mapped_column(
        ForeignKey("payment_references.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    fee_item_id: Mapped[int] = mapped_column(ForeignKey("fee_items.id"))
    fee_code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int]
    retention_bp: Mapped[int]

    reference: Mapped[ReferenceRow] = relationship(back_populates="items")


class AuditRow(Base):
    """Append-only, hash-chained log of every human or system action that matters."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def _account_plain(row: AccountRow, sealer) -> str:  # noqa: ANN001
    return f"{row.bank_bin}:{sealer.open(row.number_enc)}"


from feepay.crypto import BLIND_INDEXES, SEALED_COLUMNS  # noqa: E402

SEALED_COLUMNS.append((AccountRow, "number_enc"))
BLIND_INDEXES.append((AccountRow, "number_index", _account_plain))

# The other packages' tables, so that Base.metadata is the whole schema.
from feepay.storage import tables_callbacks, tables_reconcile, tables_statements  # noqa: E402,F401
