"""Tables for reconciliation: runs, matches, mismatches and their resolutions (migration 0004).

- ``recon_runs``: one row per attempt at reconciling one account-day (the nightly job, a
  manual re-run, a re-run after a resolution). Keeps the day's sum check: statement
  credits (counted independently in SQL) = matched + held; and what it read that the
  scheduler compares later (line count and sum, ``batches_seen`` since 0011).
- ``recon_stale_days`` (migration 0011): account-days an earlier day's run made stale.
- ``recon_matches``: one row per *allocation* (money from a statement line — or one gateway
  transaction in it — to a reference); the rows of one match share ``match_key``. These
  are machine output: a re-run of the account-day replaces them.
- ``recon_mismatches``: what a person must look at. Unique on (account, key) — the key is
  stable (``category:subject``), so a re-run finds the same row and **never touches its
  resolution**; rows a re-run no longer produces are marked ``superseded``, never deleted.
- ``recon_resolutions``: every action a person took on a mismatch (append-only), each also
  an entry in the hash-chained ``audit_log``.
- ``recon_reference_moves`` (migration 0007): the reference states a committed run asks for
  (``settled``, ``partially_paid``; ``unsettled`` since 0010: back from settled when a
  re-run no longer matches its money), queued until they are applied to
  ``payment_references`` — once per night for all account-days, see
  :mod:`reconcile.moves`. Applied rows are deleted.
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
from sqlalchemy.orm import Mapped, mapped_column

from feepay.storage.base import Base

RUN_STATUSES = ("balanced", "unbalanced", "failed")
MISMATCH_STATUSES = ("open", "carried_over", "resolved", "cleared", "superseded")
ACTIONS = ("link", "refund_due", "write_off", "carry_over", "acknowledge")
WITH_BATCH = text("batch_id IS NOT NULL")  # partial indexes: only gateway rows (0012)
WITH_EVENT = text("event_id IS NOT NULL")  # only rows that hold a callback (0015)


class ReconRunRow(Base):
    __tablename__ = "recon_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    day: Mapped[date] = mapped_column(Date)
    attempt: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(20))  # scheduler | manual | resolution | demo
    actor: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12))
    engine_version: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    lines: Mapped[int] = mapped_column(default=0)
    matches: Mapped[int] = mapped_column(default=0)
    mismatches: Mapped[int] = mapped_column(default=0)
    statement_credits: Mapped[int] = mapped_column(default=0)
    matched_amount: Mapped[int] = mapped_column(default=0)
    held_amount: Mapped[int] = mapped_column(default=0)
    result_digest: Mapped[str | None] = mapped_column(String(64))
    # what the run read of the settlement batches it may place (ids and totals, hashed):
    # the scheduler re-runs the day when storage no longer holds the same
    batches_seen: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("account_id", "day", "attempt"),
        CheckConstraint("status IN ('balanced','unbalanced','failed')", name="status"),
        Index("ix_recon_runs_day", "day"),
    )


class ReconStaleDayRow(Base):
    """An account-day that must run again although its own input did not change: a run of
    an earlier day changed what it decided for references this day also names (a late
    statement, a correction, a link). Written in that run's transaction; the nightly job
    runs marked days, and a run removes the marks it saw."""

    __tablename__ = "recon_stale_days"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    day: Mapped[date] = mapped_column(Date)
    by_run_id: Mapped[int] = mapped_column(ForeignKey("recon_runs.id"))
    marked_at: Mapped[datetime]

    __table_args__ = (Index("ix_recon_stale_days_account_day", "account_id", "day"),)


class ReconMatchRow(Base):
    __tablename__ = "recon_matches"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("recon_runs.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    day: Mapped[date] = mapped_column(Date)
    match_key: Mapped[str] = mapped_column(String(160))
    rule: Mapped[str] = mapped_column(String(16))
    # No foreign keys to the three big tables, on purpose: the runner writes these ids from
    # rows it read in the same transaction, and per-row FK checks (row locks on PostgreSQL)
    # cost several times the insert itself on a night of a million matches.
    line_id: Mapped[int | None]
    line_day: Mapped[date | None] = mapped_column(Date)
    reference_id: Mapped[int | None]
    event_id: Mapped[int | None]
    batch_id: Mapped[str | None] = mapped_column(String(100))
    txn_id: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[int]

    __table_args__ = (
        Index("ix_recon_matches_account_day", "account_id", "day"),
        Index("ix_recon_matches_reference_id", "reference_id"),  # earlier days' matches
        Index("ix_recon_matches_batch_id", "batch_id", sqlite_where=WITH_BATCH,
              postgresql_where=WITH_BATCH),  # batches an earlier day placed
    )


class ReconMismatchRow(Base):
    __tablename__ = "recon_mismatches"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("collection_accounts.id"))
    day: Mapped[date] = mapped_column(Date)  # the day whose runs manage it: persist._MOVES_DAY
    key: Mapped[str] = mapped_column(String(160))
    category: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(default=0)  # statement money it holds
    expected_amount: Mapped[int | None]
    line_id: Mapped[int | None] = mapped_column(ForeignKey("statement_lines.id"))
    line_day: Mapped[date | None] = mapped_column(Date)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("payment_events.id"))
    batch_id: Mapped[str | None] = mapped_column(String(100))
    reference_code: Mapped[str | None] = mapped_column(String(16))
    suggested: Mapped[str] = mapped_column(String(255), default="")  # codes, space-separated
    evidence: Mapped[str] = mapped_column(Text, default="{}")
    first_run_id: Mapped[int] = mapped_column(ForeignKey("recon_runs.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("recon_runs.id"))  # last run producing it
    status: Mapped[str] = mapped_column(String(14), default="open")
    resolution: Mapped[str | None] = mapped_column(String(14))
    resolution_reason: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None]
    linked_reference: Mapped[str | None] = mapped_column(String(16))
    linked_batch: Mapped[str | None] = mapped_column(String(100))  # a gateway credit's batch
    cleared_day: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        CheckConstraint(
            "status IN ('open','carried_over','resolved','cleared','superseded')", name="status"),
        CheckConstraint(
            "resolution IS NULL OR resolution IN "
            "('link','refund_due','write_off','carry_over','acknowledge')", name="resolution"),
        Index("ix_recon_mismatches_status", "status", "category"),
        Index("ix_recon_mismatches_account_day", "account_id", "day"),
        Index("ix_recon_mismatches_reference_code", "reference_code"),
        Index("ix_recon_mismatches_batch_id", "batch_id", sqlite_where=WITH_BATCH,
              postgresql_where=WITH_BATCH),
        Index("ix_recon_mismatches_run_id", "run_id"),  # a run's sum check
        # the callbacks earlier days' rows hold, asked by callback (not by history)
        Index("ix_recon_mismatches_event_id", "event_id", sqlite_where=WITH_EVENT,
              postgresql_where=WITH_EVENT),
        # the account's open rows, and those a day cleared (not its whole history)
        Index("ix_recon_mismatches_account_status", "account_id", "status", "cleared_day"),
    )


class ReconResolutionRow(Base):
    """One action a person took on a mismatch (append-only history)."""

    __tablename__ = "recon_resolutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    mismatch_id: Mapped[int] = mapped_column(ForeignKey("recon_mismatches.id"), index=True)
    action: Mapped[str] = mapped_column(String(14))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime]
    reference_code: Mapped[str | None] = mapped_column(String(16))
    audit_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(
            "action IN ('link','refund_due','write_off','carry_over','acknowledge')",
            name="action"),
    )


class ReconReferenceMoveRow(Base):
    """A reference state a committed run asks for, waiting to be applied (a queue):
    ``settled``, ``partially_paid``, or ``unsettled`` — back from settled to what the
    reference's callbacks say, when a re-run no longer matches its money (migration 0010;
    allocated 0)."""

    __tablename__ = "recon_reference_moves"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("recon_runs.id"))
    # no foreign key: like the match rows, written from rows read in the same transaction
    reference_id: Mapped[int]
    state: Mapped[str] = mapped_column(String(16))
    allocated: Mapped[int]
    paid_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("state IN ('settled','partially_paid','unsettled')", name="state"),
    )


__all__ = ["ReconMatchRow", "ReconMismatchRow", "ReconReferenceMoveRow", "ReconResolutionRow",
           "ReconRunRow", "ReconStaleDayRow"]
