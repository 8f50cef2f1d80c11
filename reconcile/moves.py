"""Reference states asked for by runs: queued with the run, applied in one pass.

A run decides which references are now ``settled`` or ``partially_paid`` — and, when a
re-run no longer matches money to a reference an earlier run of the day settled, which
must move back (``unsettled``). It does not rewrite ``payment_references`` in its own
transaction: it **queues** those moves in ``recon_reference_moves`` (a narrow row each,
committed atomically with the run's matches and mismatches), and :func:`apply` moves every
queued reference with set-based, guarded UPDATEs — after the night's last account-day
(:meth:`Reconciler.run <reconcile.runner.Reconciler.run>`) or right after a single
account-day (:meth:`~reconcile.runner.Reconciler.run_account_day`).

Why: an account-day's references were issued among every other unit's, so they lie on
nearly every page of the table. Moving them per account-day rewrote the whole table once
per account (on SQLite: to the WAL, then back by the checkpoint); queued, the night
rewrites it once.

What stays true:

* **Nothing is lost.** A queued move is only deleted by the transaction that applied it,
  or by a later run of the same account-day, which replaces it with what it asks for now.
  A process that dies between a run's commit and the apply leaves the moves queued; the
  next run, or ``feepay reconcile --apply-queued``, applies them.
* **Guarded, never twice.** ``settled`` only from issued / partially paid / paid /
  overpaid / expired; ``partially_paid`` only from issued; never out of ``cancelled``.
  A reference cancelled between the run and the apply stays cancelled and is counted as
  *refused* for the run that asked.
* **Back from settled only with no money behind it.** ``unsettled`` applies last, only to
  references still ``settled`` that no stored match pays (another day may have matched
  them meanwhile: they stay settled, which is not an error). The state comes from the
  reference's callbacks (see :data:`_UNSETTLE_SQL`); the caller writes an audit
  entry for each (:meth:`Reconciler.apply_moves
  <reconcile.runner.Reconciler.apply_moves>`).
* **Readers may see the old state for a moment**: between an account-day's commit and
  the apply (seconds, the rest of the night's account-days at most), a settled reference
  still reads ``paid``. The run's matches are already stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from feepay.storage.tables_reconcile import ReconReferenceMoveRow
from reconcile.models import DayResult

log = logging.getLogger(__name__)
SETTLE_FROM = ("issued", "partially_paid", "paid", "overpaid", "expired")
_STATES = ",".join(f"'{s}'" for s in SETTLE_FROM)
MOVE_COLUMNS = ("run_id", "reference_id", "state", "allocated", "paid_at")

# Several moves for one reference (a re-run, a part-payment completed the next day) fold
# into one: the largest amount allocated, the earliest payment time.
_SETTLE_SQL = """
UPDATE {fail}payment_references{alias}
   SET state = 'settled', settled_at = :now,
       paid_at = COALESCE({r}.paid_at, m.paid),
       amount_paid = {greatest}({r}.amount_paid, m.alloc)
  FROM (SELECT reference_id AS id, MAX(allocated) AS alloc, MIN(paid_at) AS paid
          FROM recon_reference_moves WHERE state = 'settled'
         GROUP BY reference_id ORDER BY reference_id) AS m
 WHERE {r}.id = m.id AND {per_row}{r}.state IN ({states})"""
# SQLite: "+state" keeps the guard a per-row check; it must not lead the plan. "OR FAIL":
# a failing row stops the statement without undoing the rows before it, so SQLite keeps
# no statement journal (a copy of every page of the table the night rewrites, ~0.5 s on
# a million references); the caller's transaction rolls back on any error anyway
_SETTLE = {
    "sqlite": _SETTLE_SQL.format(fail="OR FAIL ", alias="", r="payment_references",
                                 greatest="MAX", per_row="+", states=_STATES),
    "postgresql": _SETTLE_SQL.format(fail="", alias=" AS r", r="r", greatest="GREATEST",
                                     per_row="", states=_STATES)}
_PARTIAL = """
UPDATE payment_references SET state = 'partially_paid'
 WHERE id IN (SELECT reference_id FROM recon_reference_moves WHERE state = 'partially_paid')
   AND state = 'issued'"""
_REFUSED = """
SELECT m.run_id, COUNT(DISTINCT m.reference_id)
  FROM recon_reference_moves AS m JOIN payment_references AS r ON r.id = m.reference_id
 WHERE m.state = 'settled' AND r.state <> 'settled'
 GROUP BY m.run_id"""
_QUEUED = "SELECT state, COUNT(*) FROM recon_reference_moves GROUP BY state"

# Back from settled: the state the reference's callbacks give it, as if the statement had
# never paid it — paid/overpaid (paid_at kept), partially_paid (also for a part-payment
# that a queued move of the same apply, or an open underpaid mismatch, holds), else expired
# once past its expiry (what the expiry sweep would have made of an unpaid reference),
# else issued. The callbacks counted are those applied, and those refused only because the
# reference was settled when they came (flagged duplicate_payment alone: paid and overpaid
# references take a second payment, so no other refusal carries that flag without
# paid_after_expiry or reference_cancelled) — a gateway's callback arriving after the
# statement settled its money is still a payment once that money is taken away.
# Guarded: still settled, and no stored match pays it (another day may have meanwhile).
_FLAGS = "(',' || COALESCE(e.flags, '') || ',')"
_UNSETTLE_SQL = """
UPDATE payment_references{alias}
   SET state = CASE WHEN u.paid > {r}.amount_due THEN 'overpaid'
                    WHEN u.paid = {r}.amount_due THEN 'paid'
                    WHEN u.paid > 0 OR u.part = 1 OR EXISTS (
                         SELECT 1 FROM recon_mismatches AS x
                          WHERE x.reference_code = {r}.code AND x.category = 'underpaid'
                            AND x.status IN ('open', 'carried_over') AND x.amount > 0)
                         THEN 'partially_paid'
                    WHEN {r}.expires_at < :now THEN 'expired'
                    ELSE 'issued' END,
       amount_paid = u.paid, settled_at = NULL,
       paid_at = CASE WHEN u.paid >= {r}.amount_due THEN {r}.paid_at END
  FROM (SELECT q.reference_id AS id,
               MAX(CASE WHEN q.state = 'partially_paid' THEN 1 ELSE 0 END) AS part,
               (SELECT COALESCE(SUM(e.amount), 0) FROM payment_events AS e
                 WHERE e.reference_id = q.reference_id
                   AND (e.applied OR (e.status = 'success'
                        AND {flags} LIKE '%,duplicate_payment,%'
                        AND {flags} NOT LIKE '%,paid_after_expiry,%'
                        AND {flags} NOT LIKE '%,reference_cancelled,%'))) AS paid
          FROM recon_reference_moves AS q
         WHERE q.reference_id IN (SELECT reference_id FROM recon_reference_moves
                                   WHERE state = 'unsettled')
         GROUP BY q.reference_id) AS u
 WHERE {r}.id = u.id AND {r}.state = 'settled'
   AND NOT EXISTS (SELECT 1 FROM recon_matches AS x
                    WHERE x.reference_id = {r}.id AND x.amount > 0)
RETURNING {r}.id, {r}.state, {r}.amount_paid"""
_UNSETTLE = {
    "sqlite": _UNSETTLE_SQL.format(alias="", r="payment_references", flags=_FLAGS),
    "postgresql": _UNSETTLE_SQL.format(alias=" AS r", r="r", flags=_FLAGS)}
# who asked (the latest run, if several did) and what the reference held before
_UNSETTLE_ASKED = """
SELECT r.id, MAX(m.run_id), r.code, r.state, r.amount_due, r.amount_paid
  FROM recon_reference_moves AS m JOIN payment_references AS r ON r.id = m.reference_id
 WHERE m.state = 'unsettled'
 GROUP BY r.id, r.code, r.state, r.amount_due, r.amount_paid"""


@dataclass(frozen=True)
class Unsettled:
    """One reference :func:`apply` moved back from ``settled``.

    Attributes:
        run_id: the run that asked (the latest, if several did).
        state: the state it moved to.
        paid_before, paid_after: ``amount_paid`` before and after (the sum of the
            callbacks that count, see :data:`_UNSETTLE_SQL`).
    """

    run_id: int
    reference_id: int
    code: str
    state: str
    amount_due: int
    paid_before: int
    paid_after: int

    def details(self) -> dict[str, object]:
        """What the audit entry records."""
        return {"run_id": self.run_id, "old_state": "settled", "new_state": self.state,
                "amount_due": self.amount_due, "amount_paid_before": self.paid_before,
                "amount_paid_after": self.paid_after}


@dataclass
class Applied:
    """What one :func:`apply` did.

    Attributes:
        moved: references whose state changed.
        refused: references a run asked to settle that could not be (cancelled
            meanwhile, say), by run.
        unsettled: references moved back from ``settled`` (money a re-run no longer
            matched), in reference id order; each needs an audit entry.
        kept: references a run asked to move back that stay settled (another day's
            money pays them now), by run — not an error.
    """

    moved: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    unsettled: list[Unsettled] = field(default_factory=list)
    kept: dict[int, int] = field(default_factory=dict)

    @property
    def unsettled_by_run(self) -> dict[int, list[str]]:
        """The codes moved back from ``settled``, by the run that asked."""
        out: dict[int, list[str]] = {}
        for u in self.unsettled:
            out.setdefault(u.run_id, []).append(u.code)
        return out


def queue(conn: Connection, run_id: int, result: DayResult, ref_ids: dict[str, int],
          now: datetime, start: Callable[[], object] | None = None) -> int:
    """Queue the reference states ``result`` asks for; returns how many.

    Only references of the run's own account move (the engine's updates already are).
    ``start`` is called right before the rows are written, to start pure-Python work on
    another thread while the driver works (see :func:`reconcile.persist.write_result`).
    """
    stamp = _stamper(conn)
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        rows = [(run_id, ref_ids[u.code], u.state, u.allocated, stamp(u.paid_at or now))
                for u in result.updates if u.code in ref_ids]
        if start is not None:
            start()
        if not rows:
            return 0
        with raw.cursor() as cur, cur.copy(
                f"COPY recon_reference_moves ({', '.join(MOVE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)
    # one statement per state over a JSON array: the driver releases the GIL while SQLite
    # inserts; the run and the state are parameters, so SQLite extracts three values a row
    by_state: dict[str, list[tuple]] = {}
    for u in result.updates:
        if u.code in ref_ids:
            by_state.setdefault(u.state, []).append(
                (ref_ids[u.code], u.allocated, stamp(u.paid_at or now)))
    arrays = [(state, json.dumps(rows)) for state, rows in sorted(by_state.items())]
    if start is not None:
        start()
    cur = raw.cursor()
    for state, array in arrays:
        cur.execute(_QUEUE_SQLITE, (run_id, state, array))
    cur.close()
    return sum(len(rows) for rows in by_state.values())


_QUEUE_SQLITE = (
    "INSERT INTO recon_reference_moves (run_id, reference_id, state, allocated, paid_at) "
    "SELECT ?, json_extract(value, '$[0]'), ?, json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]') FROM json_each(?)")


def queue_unsettled(conn: Connection, run_id: int, reference_ids: list[int],
                    now: datetime) -> int:
    """Queue moves back from ``settled`` (allocated 0) for ``reference_ids``; returns how
    many. A handful a re-run at most: plain parameters."""
    if not reference_ids:
        return 0
    stamp = _stamper(conn)(now)
    conn.execute(text("INSERT INTO recon_reference_moves (run_id, reference_id, state, "
                      "allocated, paid_at) VALUES (:run, :ref, 'unsettled', 0, :at)"),
                 [{"run": run_id, "ref": rid, "at": stamp} for rid in reference_ids])
    return len(reference_ids)


def _stamper(conn: Connection) -> Callable[[datetime], object]:
    """A timestamp as the ORM stores it on this database (SQLite: UTC text), memoised:
    a day's payments share their seconds, and formatting is most of a move's cost."""
    bind = ReconReferenceMoveRow.__table__.c.paid_at.type.dialect_impl(
        conn.dialect).bind_processor(conn.dialect)
    if bind is None:
        return lambda value: value
    seen: dict[datetime, object] = {}

    def stamp(value: datetime) -> object:
        out = seen.get(value)
        if out is None:
            out = seen[value] = bind(value)
        return out

    return stamp


def apply(conn: Connection, now: datetime) -> Applied:
    """Apply every queued move, in the caller's transaction; applied moves are deleted.
    On any error the caller must roll back, never commit: on SQLite a statement that
    fails half-way keeps the rows it already changed (see :data:`_SETTLE`).

    Nothing is queued meanwhile — SQLite: the caller's transaction took the write lock at
    BEGIN; PostgreSQL: the queue is locked first — so what is deleted at the end is
    exactly what was applied. Part-payments first (issued → partially_paid), then
    settling, so a reference that one day part-paid and the next completed ends
    ``settled`` whatever the order of the runs; moves back from ``settled`` last, so a
    reference another day settles in the same apply stays settled.
    """
    if conn.dialect.name == "postgresql":
        # waits for runs still queueing, then keeps them (and a second applier) out
        conn.execute(text("LOCK TABLE recon_reference_moves IN SHARE ROW EXCLUSIVE MODE"))
    queued = dict(conn.execute(text(_QUEUED)).all())
    stamped = _stamper(conn)(now)
    moved = conn.execute(text(_PARTIAL)).rowcount
    settled = conn.execute(text(_SETTLE[conn.dialect.name]), {"now": stamped}).rowcount
    refused: dict[int, int] = {}
    if settled < queued.get("settled", 0):
        # a re-run (already settled: fine), two runs naming one reference, or a reference
        # that changed meanwhile: only the last is refused
        refused = {run: n for run, n in conn.execute(text(_REFUSED)).all() if n}
    unsettled, kept = (_unsettle(conn, stamped) if queued.get("unsettled")
                       else ([], {}))
    conn.execute(text("DELETE FROM recon_reference_moves"))  # SQLite: truncates, no row walk
    for run, n in sorted(refused.items()):
        log.warning("run %s: %d reference(s) could not be settled (changed meanwhile, e.g. "
                    "cancelled)", run, n)
    applied = Applied(moved + settled + len(unsettled), refused, unsettled, kept)
    for run, codes in sorted(applied.unsettled_by_run.items()):
        log.info("run %s: %d reference(s) moved back from settled (no money matched any "
                 "more): %s", run, len(codes), ", ".join(codes))
    for run, n in sorted(kept.items()):
        log.info("run %s: %d reference(s) stay settled: money of another day pays them",
                 run, n)
    return applied


def _unsettle(conn: Connection, stamped: object) -> tuple[list[Unsettled], dict[int, int]]:
    """Move back the references queued ``unsettled`` that are still settled with no match
    paying them; returns them, and by run how many asked for stay settled."""
    asked = {row[0]: row for row in conn.execute(text(_UNSETTLE_ASKED)).all()}
    done = {rid: (state, int(paid)) for rid, state, paid in conn.execute(
        text(_UNSETTLE[conn.dialect.name]), {"now": stamped}).all()}
    unsettled = [Unsettled(run, rid, code, done[rid][0], int(due), int(before), done[rid][1])
                 for rid, run, code, _, due, before in sorted(asked.values())
                 if rid in done]
    kept: dict[int, int] = {}
    for rid, run, _, state, _, _ in asked.values():
        if rid not in done and state == "settled":
            kept[run] = kept.get(run, 0) + 1
    return unsettled, kept
