"""Writing one account-day's result: matches, mismatches, clears, reference states, sums.

All of it happens in the run's single transaction, in this order:

1. the day's previous matches are replaced by the new ones (machine output);
2. mismatches are upserted on (account, key): facts refreshed, a ``superseded`` row
   reopened, and **status and resolution of every other row left as they are** — a
   person's decision survives any number of re-runs; open rows of the day that the run no
   longer produces become ``superseded`` (never deleted);
3. earlier mismatches this day resolved (a part-payment completed, a late callback, money
   that turned up) become ``cleared``;
4. references move with guarded updates (``… WHERE state IN (…)``): never out of
   ``cancelled``, never twice;
5. the sum check is recomputed from the tables themselves: the day's statement credits,
   counted in ``statement_lines``, must equal what the stored matches and mismatches hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow
from feepay.storage.tables_statements import StatementLineRow
from reconcile.loader import chunks, member
from reconcile.models import Category, DayResult, Mismatch

log = logging.getLogger(__name__)
WRITE_CHUNK = 20_000
SETTLE_FROM = ("issued", "partially_paid", "paid", "overpaid", "expired")
CLEARABLE = (Category.PAID_NO_MONEY.value, Category.UNDERPAID.value,
             Category.MONEY_NO_CALLBACK.value)


@dataclass(frozen=True)
class Sums:
    """The day's sum check, counted from the tables."""

    statement_credits: int
    matched: int
    held: int

    @property
    def balanced(self) -> bool:
        return self.statement_credits == self.matched + self.held


def write_result(session: Session, run_id: int, result: DayResult, ref_ids: dict[str, int],
                 now: datetime, on_update: Callable[[], object] | None = None) -> tuple[int, int]:
    """Store ``result`` for its account-day. Returns (references moved, references refused).

    References move *first*: on PostgreSQL the foreign-key checks of the match rows then
    find their parent rows already updated by this transaction, instead of updating rows
    they just key-share-locked (which costs a multixact per reference).

    The references' UPDATE is the longest statement of a run (a second per 150,000
    references on SQLite) and the driver releases the GIL while it runs. ``on_update`` is
    called just before it, to start pure-Python work elsewhere (the runner's digest); on
    SQLite a helper thread builds the match and mismatch rows meanwhile. Helpers only read
    the frozen result: this thread alone touches the database.
    """
    memos = _memos(session, result)
    if session.get_bind().dialect.name != "sqlite":
        if on_update is not None:
            on_update()
        moved = _move_references(session, result, ref_ids, now)
        _replace_matches(session, run_id, result, ref_ids)
        _upsert_mismatches(session, run_id, result, now, memos)
    else:
        created_at = ReconMismatchRow.__table__.c.created_at.type
        dialect = session.get_bind().dialect
        stamped = created_at.dialect_impl(dialect).bind_processor(dialect)(now)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recon-rows") as helper:
            jobs: list[Future[list[tuple]]] = []

            def start() -> None:
                jobs.append(helper.submit(_sqlite_match_rows, run_id, result, ref_ids))
                jobs.append(helper.submit(_sqlite_mismatch_rows, run_id, result, stamped,
                                          memos))
                if on_update is not None:
                    on_update()

            moved = _move_references(session, result, ref_ids, now, start)
            _replace_matches(session, run_id, result, ref_ids, jobs[0].result())
            _upsert_mismatches(session, run_id, result, now, memos, jobs[1].result())
    _clear(session, result, now)
    return moved


MATCH_COLUMNS = ("run_id", "account_id", "day", "match_key", "rule", "line_id", "line_day",
                 "reference_id", "event_id", "batch_id", "txn_id", "amount")


def _replace_matches(session: Session, run_id: int, result: DayResult,
                     ref_ids: dict[str, int], sqlite_rows: list[tuple] | None = None) -> None:
    """Replace the day's matches: one row per allocation, written in bulk through the
    driver (PostgreSQL ``COPY``, SQLite ``executemany``) — a million rows in seconds."""
    M = ReconMatchRow
    session.execute(delete(M).where(M.account_id == result.account_id, M.day == result.day))
    account, get = result.account_id, ref_ids.get
    conn = session.connection()
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(
                f"COPY recon_matches ({', '.join(MATCH_COLUMNS)}) FROM STDIN") as copy:
            for m in result.matches:
                key, rule = m.key, m.rule.value
                for a in m.allocations:
                    copy.write_row((run_id, account, result.day, key, rule, a.line_id,
                                    a.line_day, get(a.code), a.event_id, a.batch_id, a.txn_id,
                                    a.amount))
        return
    if sqlite_rows is None:
        sqlite_rows = _sqlite_match_rows(run_id, result, ref_ids)
    cur = raw.cursor()
    cur.executemany(f"INSERT INTO recon_matches ({', '.join(MATCH_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(MATCH_COLUMNS))})", sqlite_rows)
    cur.close()


def _sqlite_match_rows(run_id: int, result: DayResult, ref_ids: dict[str, int]) -> list[tuple]:
    """The match rows as SQLite stores them (dates as ISO text, each distinct day converted
    once)."""
    account, get, iso = result.account_id, ref_ids.get, date.isoformat
    day = iso(result.day)
    days: dict[date, str] = {result.day: day}
    rows = []
    append = rows.append
    for m in result.matches:
        key, rule = m.key, m.rule.value
        for a in m.allocations:
            line_day = a.line_day
            if line_day is not None:
                line_day = days.get(line_day) or days.setdefault(line_day, iso(line_day))
            append((run_id, account, day, key, rule, a.line_id, line_day, get(a.code),
                    a.event_id, a.batch_id, a.txn_id, a.amount))
    return rows


def _memos(session: Session, result: DayResult) -> dict[int, str]:
    """Memos of mismatched lines the engine saw without one (see the loader)."""
    wanted = {m.line_id for m in result.mismatches
              if m.line_id is not None and "memo" not in m.evidence}
    if not wanted:
        return {}
    L = StatementLineRow
    return dict(session.execute(select(L.id, L.memo_raw).where(member(session, L.id, wanted)))
                .all())


def _evidence(m: Mismatch, memos: dict[int, str]) -> str:
    """The mismatch's evidence as stored: JSON, with the line's memo put back."""
    evidence = m.evidence
    if m.line_id in memos and memos[m.line_id]:
        evidence = {"memo": memos[m.line_id], **evidence}
    return json.dumps(evidence, ensure_ascii=False, sort_keys=True, default=str)


def _mismatch_row(run_id: int, result: DayResult, m: Mismatch, now: datetime,
                  memos: dict[int, str]) -> dict:
    return {"account_id": result.account_id, "day": result.day, "key": m.key,
            "category": m.category.value, "amount": m.amount,
            "expected_amount": m.expected_amount, "line_id": m.line_id,
            "line_day": m.line_day, "event_id": m.event_id, "batch_id": m.batch_id,
            "reference_code": m.reference, "suggested": " ".join(m.suggested),
            "evidence": _evidence(m, memos), "first_run_id": run_id, "run_id": run_id,
            "status": "open", "created_at": now, "updated_at": now}


_REFRESHED = ("run_id", "amount", "expected_amount", "line_id", "line_day", "event_id",
              "batch_id", "reference_code", "suggested", "evidence", "updated_at")


MISMATCH_COLUMNS = ("account_id", "day", "key", "category", "amount", "expected_amount",
                    "line_id", "line_day", "event_id", "batch_id", "reference_code",
                    "suggested", "evidence", "first_run_id", "run_id", "status", "created_at",
                    "updated_at")
_QUOTED = ", ".join(f'"{c}"' for c in MISMATCH_COLUMNS)  # "key" is an SQL keyword
_SQLITE_UPSERT = (
    f"INSERT INTO recon_mismatches ({_QUOTED}) "
    f"VALUES ({', '.join('?' * len(MISMATCH_COLUMNS))}) "
    'ON CONFLICT (account_id, "key") DO UPDATE SET '
    + ", ".join(f"{c} = excluded.{c}" for c in _REFRESHED)
    + ", status = CASE WHEN recon_mismatches.status = 'superseded' THEN 'open' "
      "ELSE recon_mismatches.status END")


def _upsert_mismatches(session: Session, run_id: int, result: DayResult, now: datetime,
                       memos: dict[int, str], sqlite_rows: list[tuple] | None = None) -> None:
    X = ReconMismatchRow
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        if sqlite_rows is None:
            created_at = X.__table__.c.created_at.type
            stamped = created_at.dialect_impl(conn.dialect).bind_processor(conn.dialect)(now)
            sqlite_rows = _sqlite_mismatch_rows(run_id, result, stamped, memos)
        # the statement SQLAlchemy would build, through the driver: no per-row processing
        cur = conn.connection.driver_connection.cursor()
        cur.executemany(_SQLITE_UPSERT, sqlite_rows)
        cur.close()
    else:
        for part in chunks((_mismatch_row(run_id, result, m, now, memos)
                            for m in result.mismatches), WRITE_CHUNK):
            stmt = pg_insert(X.__table__)
            refreshed = {c: stmt.excluded[c] for c in _REFRESHED}
            refreshed["status"] = case((X.__table__.c.status == "superseded", "open"),
                                       else_=X.__table__.c.status)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["account_id", "key"], set_=refreshed), part)
    session.execute(update(X).where(
        X.account_id == result.account_id, X.day == result.day, X.run_id != run_id,
        X.status == "open").values(status="superseded", updated_at=now))


def _sqlite_mismatch_rows(run_id: int, result: DayResult, stamped: str,
                          memos: dict[int, str]) -> list[tuple]:
    """The mismatch rows in :data:`MISMATCH_COLUMNS` order as SQLite stores them (dates as
    ISO text, ``stamped`` = the run's time as the ORM writes it)."""
    iso = date.isoformat
    account, day = result.account_id, iso(result.day)
    days: dict[date, str] = {result.day: day}
    rows = []
    for m in result.mismatches:
        line_day = m.line_day
        if line_day is not None:
            line_day = days.get(line_day) or days.setdefault(line_day, iso(line_day))
        rows.append((account, day, m.key, m.category.value, m.amount, m.expected_amount,
                     m.line_id, line_day, m.event_id, m.batch_id, m.reference,
                     " ".join(m.suggested), _evidence(m, memos), run_id, run_id, "open",
                     stamped, stamped))
    return rows


def _clear(session: Session, result: DayResult, now: datetime) -> None:
    """Clear earlier open mismatches this day resolved: the engine's explicit ``clears``
    and every ``paid_no_money`` whose callback this day paired with money."""
    X = ReconMismatchRow
    candidates = session.execute(select(X.id, X.key, X.category, X.event_id).where(
        X.account_id == result.account_id, X.category.in_(CLEARABLE),
        X.status.in_(("open", "carried_over")))).all()
    if not candidates:
        return
    wanted = set(result.clears)
    waiting = {r.event_id: r.id for r in candidates
               if r.category == Category.PAID_NO_MONEY.value and r.event_id is not None}
    claimed = result.claimed_events() if waiting else set()
    ids = [r.id for r in candidates if r.key in wanted]
    ids += [mid for event_id, mid in waiting.items() if event_id in claimed]
    if ids:
        session.execute(update(X).where(member(session, X.id, ids)).values(
            status="cleared", cleared_day=result.day, updated_at=now)
            .execution_options(synchronize_session=False))


def _move_references(session: Session, result: DayResult, ref_ids: dict[str, int],
                     now: datetime, start: Callable[[], object] | None = None
                     ) -> tuple[int, int]:
    """Guarded state moves. Returns (rows moved, references that should be settled but
    are not — cancelled meanwhile, say; already-settled ones on a re-run are fine).
    ``start`` (SQLite) is called right before the settling UPDATE runs."""
    settle = [u for u in result.updates if u.state == "settled" and u.code in ref_ids]
    partial = [u for u in result.updates if u.state == "partially_paid" and u.code in ref_ids]
    moved = _settle(session, [(ref_ids[u.code], u.allocated, u.paid_at) for u in settle], now,
                    start)
    R = ReferenceRow
    if partial:
        moved += session.execute(update(R).where(
            member(session, R.id, [ref_ids[u.code] for u in partial]), R.state == "issued")
            .values(state="partially_paid").execution_options(
                synchronize_session=False)).rowcount
    refused = 0
    if moved < len(settle) + len(partial):  # a re-run, or something changed meanwhile
        refused = session.scalar(select(func.count()).select_from(R).where(
            member(session, R.id, [ref_ids[u.code] for u in settle]),
            R.state != "settled")) or 0
    return moved, refused


def _settle(session: Session, rows: list[tuple[int, int, datetime | None]],
            now: datetime, start: Callable[[], object] | None = None) -> int:
    """issued/partially_paid/paid/overpaid/expired → settled, guarded; returns rows moved.

    One set-based UPDATE joined to the wanted moves (PostgreSQL: ``unnest`` arrays; SQLite:
    ``UPDATE … FROM`` a JSON array read by ``json_each``) instead of a statement per
    reference. The moves go in id order, so the table's pages are visited in sequence.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return _settle_postgresql(session, rows, now) if rows else 0
    if not rows:
        if start is not None:
            start()
        return 0
    stamp = ReferenceRow.__table__.c.paid_at.type.bind_processor(conn.dialect)
    # the text the driver's datetime adapter writes (``isoformat(" ")``), as before, when
    # these values went through a temporary table (which cost a third of this UPDATE)
    moves = json.dumps(sorted((rid, alloc, stamp(paid or now).isoformat(" "))
                              for rid, alloc, paid in rows))
    cur = conn.connection.driver_connection.cursor()
    states = ",".join(f"'{x}'" for x in SETTLE_FROM)
    if start is not None:
        start()
    # "+state": the guard is checked per row; it must not lead the plan (by the state index)
    cur.execute(f"""
        UPDATE payment_references
           SET state = 'settled', settled_at = ?,
               paid_at = COALESCE(payment_references.paid_at, s.paid),
               amount_paid = MAX(payment_references.amount_paid, s.alloc)
          FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS alloc,
                       json_extract(value, '$[2]') AS paid FROM json_each(?)) AS s
         WHERE payment_references.id = s.id AND +payment_references.state IN ({states})""",
                (stamp(now), moves))
    moved = cur.rowcount
    cur.close()
    return moved


_PG_SETTLE = text("""
UPDATE payment_references AS r
   SET state = 'settled', settled_at = :now,
       paid_at = COALESCE(r.paid_at, u.paid_at),
       amount_paid = GREATEST(r.amount_paid, u.alloc)
  FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
               unnest(CAST(:allocs AS bigint[])) AS alloc,
               unnest(CAST(:paids AS timestamptz[])) AS paid_at) AS u
 WHERE r.id = u.id
   AND r.state IN ('issued','partially_paid','paid','overpaid','expired')
""")


def _settle_postgresql(session: Session, rows: list[tuple[int, int, datetime | None]],
                       now: datetime) -> int:
    moved = 0
    rows = sorted(rows, key=lambda r: r[0])  # id order: heap pages in sequence, not at random
    for part in chunks(rows, 50_000):
        res = session.execute(_PG_SETTLE, {
            "now": now, "ids": [r[0] for r in part], "allocs": [r[1] for r in part],
            "paids": [r[2] or now for r in part]})
        moved += res.rowcount
    return moved


def sums(session: Session, run_id: int, account_id: int, day: date) -> Sums:
    """Count the day's money again, from the tables (the loud second layer)."""
    L, M, X = StatementLineRow, ReconMatchRow, ReconMismatchRow
    credits = session.scalar(select(func.coalesce(func.sum(L.amount), 0)).where(
        L.account_id == account_id, L.posting_date == day, L.direction == "credit"))
    matched = session.scalar(select(func.coalesce(func.sum(M.amount), 0)).where(
        M.account_id == account_id, M.day == day, M.line_day == day, M.run_id == run_id))
    held = session.scalar(select(func.coalesce(func.sum(X.amount), 0)).where(
        X.run_id == run_id, X.line_day == day))
    return Sums(int(credits), int(matched), int(held))
