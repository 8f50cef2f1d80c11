"""Reference states asked for by runs: queued with the run, applied in one pass.

A run decides which references are now ``settled`` or ``partially_paid``. It does not
rewrite ``payment_references`` in its own transaction: it **queues** those moves in
``recon_reference_moves`` (a narrow row each, committed atomically with the run's matches
and mismatches), and :func:`apply` moves every queued reference in one set-based,
guarded UPDATE — after the night's last account-day (:meth:`Reconciler.run
<reconcile.runner.Reconciler.run>`) or right after a single account-day
(:meth:`~reconcile.runner.Reconciler.run_account_day`).

Why: an account-day's references were issued among every other unit's, so they lie on
nearly every page of the table. Moving them per account-day rewrote the whole table once
per account (on SQLite: to the WAL, then back by the checkpoint); queued, the night
rewrites it once.

What stays true:

* **Nothing is lost.** A queued move is only deleted by the transaction that applied it.
  A process that dies between a run's commit and the apply leaves the moves queued; the
  next run, or ``feepay reconcile --apply-queued``, applies them.
* **Guarded, never twice.** ``settled`` only from issued / partially paid / paid /
  overpaid / expired; ``partially_paid`` only from issued; never out of ``cancelled``.
  A reference cancelled between the run and the apply stays cancelled and is counted as
  *refused* for the run that asked.
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
UPDATE payment_references{alias}
   SET state = 'settled', settled_at = :now,
       paid_at = COALESCE({r}.paid_at, m.paid),
       amount_paid = {greatest}({r}.amount_paid, m.alloc)
  FROM (SELECT reference_id AS id, MAX(allocated) AS alloc, MIN(paid_at) AS paid
          FROM recon_reference_moves WHERE state = 'settled'
         GROUP BY reference_id ORDER BY reference_id) AS m
 WHERE {r}.id = m.id AND {per_row}{r}.state IN ({states})"""
# SQLite: "+state" keeps the guard a per-row check; it must not lead the plan
_SETTLE = {
    "sqlite": _SETTLE_SQL.format(alias="", r="payment_references", greatest="MAX",
                                 per_row="+", states=_STATES),
    "postgresql": _SETTLE_SQL.format(alias=" AS r", r="r", greatest="GREATEST", per_row="",
                                     states=_STATES)}
_PARTIAL = """
UPDATE payment_references SET state = 'partially_paid'
 WHERE id IN (SELECT reference_id FROM recon_reference_moves WHERE state = 'partially_paid')
   AND state = 'issued'"""
_REFUSED = """
SELECT m.run_id, COUNT(DISTINCT m.reference_id)
  FROM recon_reference_moves AS m JOIN payment_references AS r ON r.id = m.reference_id
 WHERE m.state = 'settled' AND r.state <> 'settled'
 GROUP BY m.run_id"""
_TO_SETTLE = "SELECT COUNT(*) FROM recon_reference_moves WHERE state = 'settled'"


@dataclass
class Applied:
    """What one :func:`apply` did.

    Attributes:
        moved: references whose state changed.
        refused: references a run asked to settle that could not be (cancelled
            meanwhile, say), by run.
    """

    moved: int = 0
    refused: dict[int, int] = field(default_factory=dict)


def queue(conn: Connection, run_id: int, result: DayResult, ref_ids: dict[str, int],
          now: datetime, start: Callable[[], object] | None = None) -> int:
    """Queue the reference states ``result`` asks for; returns how many.

    Only references of the run's own account move (the engine's updates already are).
    ``start`` is called right before the rows are written, to start pure-Python work on
    another thread while the driver works (see :func:`reconcile.persist.write_result`).
    """
    stamp = _stamper(conn)
    rows = [(run_id, ref_ids[u.code], u.state, u.allocated, stamp(u.paid_at or now))
            for u in result.updates if u.code in ref_ids]
    raw = conn.connection.driver_connection
    if start is not None:
        start()
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(
                f"COPY recon_reference_moves ({', '.join(MOVE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)
    # one statement over a JSON array: the driver releases the GIL while SQLite inserts
    cur = raw.cursor()
    cur.execute("INSERT INTO recon_reference_moves (run_id, reference_id, state, allocated, "
                "paid_at) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
                "json_extract(value, '$[4]') FROM json_each(?)", (json.dumps(rows),))
    cur.close()
    return len(rows)


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

    Nothing is queued meanwhile — SQLite: the caller's transaction took the write lock at
    BEGIN; PostgreSQL: the queue is locked first — so what is deleted at the end is
    exactly what was applied. Part-payments first (issued → partially_paid), then
    settling, so a reference that one day part-paid and the next completed ends
    ``settled`` whatever the order of the runs.
    """
    if conn.dialect.name == "postgresql":
        # waits for runs still queueing, then keeps them (and a second applier) out
        conn.execute(text("LOCK TABLE recon_reference_moves IN SHARE ROW EXCLUSIVE MODE"))
    to_settle = conn.execute(text(_TO_SETTLE)).scalar_one()
    moved = conn.execute(text(_PARTIAL)).rowcount
    settled = conn.execute(text(_SETTLE[conn.dialect.name]),
                           {"now": _stamper(conn)(now)}).rowcount
    refused: dict[int, int] = {}
    if settled < to_settle:
        # a re-run (already settled: fine), two runs naming one reference, or a reference
        # that changed meanwhile: only the last is refused
        refused = {run: n for run, n in conn.execute(text(_REFUSED)).all() if n}
    conn.execute(text("DELETE FROM recon_reference_moves"))  # SQLite: truncates, no row walk
    for run, n in sorted(refused.items()):
        log.warning("run %s: %d reference(s) could not be settled (changed meanwhile, e.g. "
                    "cancelled)", run, n)
    return Applied(moved + settled, refused)
