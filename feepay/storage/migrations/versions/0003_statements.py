"""statements: imports, statement lines, settlement batches and transactions

Revision ID: 0003
Revises: 0002

Exact de-duplication of statement lines is the unique constraint
(account_id, fingerprint, occurrence); see feepay/statements.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STAMP = sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", BIG, nullable=False)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    name = f"fk_{table}_{column}_{target.split('.')[0]}"
    return sa.ForeignKeyConstraint([column], [target], name=op.f(name))


def _indexes(table: str, *indexes: tuple[str, list[str]]) -> None:
    with op.batch_alter_table(table, schema=None) as batch:
        for name, columns in indexes:
            batch.create_index(name, columns, unique=False)


def upgrade() -> None:
    t = "statement_imports"
    op.create_table(
        t, _id(),
        sa.Column("account_id", BIG, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("format", sa.String(length=60), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_size", BIG, nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("imported_at", STAMP, nullable=False),
        sa.Column("account_in_file", sa.String(length=40), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("opening_balance", BIG, nullable=True),
        sa.Column("closing_balance", BIG, nullable=True),
        sa.Column("credits_total", BIG, nullable=False),
        sa.Column("debits_total", BIG, nullable=False),
        sa.Column("lines_total", BIG, nullable=False),
        sa.Column("lines_new", BIG, nullable=False),
        sa.Column("lines_duplicate", BIG, nullable=False),
        sa.CheckConstraint("kind IN ('statement','settlement')", name=op.f(f"ck_{t}_kind")),
        sa.CheckConstraint("lines_new + lines_duplicate = lines_total",
                           name=op.f(f"ck_{t}_counts")),
        _fk(t, "account_id", "collection_accounts.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
    )
    _indexes(t, (f"ix_{t}_account_id", ["account_id"]),
             (f"ix_{t}_file_sha256", ["file_sha256"]))

    t = "settlement_batches"
    op.create_table(
        t, _id(),
        sa.Column("import_id", BIG, nullable=False),
        sa.Column("account_id", BIG, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("settled_on", sa.Date(), nullable=False),
        sa.Column("gross_total", BIG, nullable=False),
        sa.Column("fee_total", BIG, nullable=False),
        sa.Column("net_total", BIG, nullable=False),
        sa.Column("txn_count", BIG, nullable=False),
        _fk(t, "account_id", "collection_accounts.id"),
        _fk(t, "import_id", "statement_imports.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint("provider", "batch_id", name=op.f(f"uq_{t}_provider_batch_id")),
    )
    _indexes(t, (f"ix_{t}_account_day", ["account_id", "settled_on"]),
             (f"ix_{t}_import_id", ["import_id"]))

    t = "statement_lines"
    op.create_table(
        t, _id(),
        sa.Column("account_id", BIG, nullable=False),
        sa.Column("import_id", BIG, nullable=False),
        sa.Column("line_no", BIG, nullable=False),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("value_at", STAMP, nullable=True),
        sa.Column("amount", BIG, nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("bank_ref", sa.String(length=100), nullable=True),
        sa.Column("memo_raw", sa.Text(), nullable=False),
        sa.Column("memo_norm", sa.Text(), nullable=False),
        sa.Column("codes", sa.String(length=255), nullable=False),
        sa.Column("counterparty_name", sa.String(length=200), nullable=True),
        sa.Column("counterparty_account", sa.String(length=40), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("occurrence", BIG, nullable=False),
        sa.CheckConstraint("direction IN ('credit','debit')", name=op.f(f"ck_{t}_direction")),
        sa.CheckConstraint("amount >= 0", name=op.f(f"ck_{t}_amount_not_negative")),
        sa.CheckConstraint("occurrence >= 1", name=op.f(f"ck_{t}_occurrence_positive")),
        _fk(t, "account_id", "collection_accounts.id"),
        _fk(t, "import_id", "statement_imports.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint("account_id", "fingerprint", "occurrence",
                            name=op.f(f"uq_{t}_account_id_fingerprint_occurrence")),
    )
    _indexes(t, (f"ix_{t}_account_day", ["account_id", "posting_date"]))

    t = "settlement_transactions"
    op.create_table(
        t, _id(),
        sa.Column("batch_pk", BIG, nullable=False),
        sa.Column("import_id", BIG, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_txn_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("order_ref", sa.String(length=100), nullable=True),
        sa.Column("reference", sa.String(length=16), nullable=True),
        sa.Column("gross", BIG, nullable=False),
        sa.Column("fee", BIG, nullable=False),
        sa.Column("net", BIG, nullable=False),
        sa.Column("paid_at", STAMP, nullable=True),
        sa.Column("line_no", BIG, nullable=False),
        sa.CheckConstraint("kind IN ('payment','refund')", name=op.f(f"ck_{t}_kind")),
        sa.CheckConstraint("net = gross - fee", name=op.f(f"ck_{t}_net_is_gross_minus_fee")),
        _fk(t, "batch_pk", "settlement_batches.id"),
        _fk(t, "import_id", "statement_imports.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint("provider", "provider_txn_id", "kind",
                            name=op.f(f"uq_{t}_provider_provider_txn_id_kind")),
    )
    _indexes(t, (f"ix_{t}_batch_pk", ["batch_pk"]), (f"ix_{t}_reference", ["reference"]))


def downgrade() -> None:
    op.drop_table("settlement_transactions")
    op.drop_table("statement_lines")
    op.drop_table("settlement_batches")
    op.drop_table("statement_imports")
