"""Writing one account-day's result: matches, mismatches, clears, reference states, sums.

All of it happens in the run's single transaction, in this order:

1. the day's previous matches are replaced by the new ones (machine output);
2. mismatches are upserted on (account, key): facts refreshed, a ``superseded`` row
   reopened, and **status and resolution of every other row left as they are** — a
   person's decision survives any number of re-runs; open rows of the day that the run no
   longer produces become ``superseded`` (never deleted);
3. earlier mismatches this day resolved (a part-payment completed, a late callback, money
   that turned up) become ``cleared`` — on a re-run, after reopening what the day's
   earlier runs cleared, so a correction that undoes a completion gives the part back;
4. the reference states the result asks for are queued (:mod:`reconcile.moves` applies
   them with guarded updates: never out of ``cancelled``, never twice), replacing what
   earlier runs of the account-day queued and nobody applied yet; a reference an earlier
   run of the day settled whose money the result no longer matches, and that no other
   day pays, is queued to move back from ``settled`` (``unsettled``);
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

from sqlalchemy import case, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import (
    ReconMatchRow,
    ReconMismatchRow,
    ReconReferenceMoveRow,
    ReconRunRow,
)
from feepay.storage.tables_statements import StatementLineRow
from reconcile import moves
from reconcile.loader import chunks, member
from reconcile.models import Category, DayResult, Mismatch

log = logging.getLogger(__name__)
WRITE_CHUNK = 20_000
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
                 now: datetime, on_update: Callable[[], object] | None = None, *,
                 later_ran: bool = True) -> int:
    """Store ``result`` for its account-day. Returns how many reference moves it queued
    (:mod:`reconcile.moves` applies them), moves back from ``settled`` included.

    The moves go first: on SQLite one statement over a JSON array, during which the driver
    releases the GIL. ``on_update`` is called just before it, to start pure-Python work
    elsewhere (the runner's digest); on SQLite a helper thread builds the match and
    mismatch rows meanwhile. Helpers only read the frozen result: this thread alone
    touches the database.
    """
    memos = _memos(session, result)
    Run = ReconRunRow
    runs = session.execute(select(Run.id, Run.status).where(
        Run.account_id == result.account_id, Run.day == result.day, Run.id != run_id)).all()
    earlier = [rid for rid, _ in runs]
    previous = max((rid for rid, status in runs if status != "failed"), default=None)
    unsettled = _requeue(session, run_id, earlier, result, now)  # reads the day's matches
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        queued = moves.queue(conn, run_id, result, ref_ids, now, on_update)
        _replace_matches(session, run_id, result, ref_ids)
        _upsert_mismatches(session, run_id, result, now, memos)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recon-rows") as helper:
            jobs: list[Future] = []

            def start() -> None:
                jobs.append(helper.submit(_sqlite_match_rows, run_id, result, ref_ids))
                jobs.append(helper.submit(_sqlite_mismatch_rows, result, memos))
                if on_update is not None:
                    on_update()

            queued = moves.queue(conn, run_id, result, ref_ids, now, start)
            _replace_matches(session, run_id, result, ref_ids, jobs[0].result())
            _upsert_mismatches(session, run_id, result, now, memos, jobs[1].result())
    if previous is not None:  # a first run of the day has no decision to find moot
        _warn_decided_moot(session, previous, result)
    _clear(session, result, now, rerun=bool(earlier), later_ran=later_ran)
    return queued + unsettled


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


def _requeue(session: Session, run_id: int, earlier: list[int], result: DayResult,
             now: datetime) -> int:
    """Replace what earlier runs of this account-day queued, and queue a move back from
    ``settled`` for each reference :func:`_dropped` finds; returns how many of those.

    Earlier runs' moves go: the result asks again for whatever still holds, and a settle
    the re-run no longer asks for must not be applied after it. Runs of one account-day
    are serialised by its lock, so no other run of the day is queueing meanwhile.
    """
    Q = ReconReferenceMoveRow
    if not earlier:  # a first run (most of a night): nothing to replace or compare
        return 0
    if session.get_bind().dialect.name == "postgresql":
        # wait for an apply in progress (it holds SHARE ROW EXCLUSIVE until it commits):
        # what it settles must be read as settled below, not as the state before it
        session.execute(text("LOCK TABLE recon_reference_moves IN ROW EXCLUSIVE MODE"))
    dropped = _dropped(session, earlier, result)
    session.execute(delete(Q).where(member(session, Q.run_id, earlier))
                    .execution_options(synchronize_session=False))
    if dropped:
        shown = ", ".join(sorted(dropped)[:10])
        log.warning("account %s on %s: %d settled reference(s) no longer have money matched "
                    "(a re-run dropped it, and no other day pays them): they move back from "
                    "settled now, to the state their callbacks give them: %s%s — check them "
                    "with `feepay refs show CODE` and the case system", result.account_id,
                    result.day, len(dropped), shown, " …" if len(dropped) > 10 else "")
    return moves.queue_unsettled(session.connection(), run_id, sorted(dropped.values()), now)


def _dropped(session: Session, earlier: list[int], result: DayResult) -> dict[str, int]:
    """References (code → id) that an earlier run of the day settled with money the
    result no longer matches to them, and that no other account-day pays: a corrected
    settlement file moved their transaction, say. Called before the day's matches are
    replaced (they are still the earlier run's).

    Candidates are the references still ``settled`` that the day's stored matches pay, and
    those an ``earlier`` run of the day queued to move back but nobody applied yet (its
    apply failed): that run's queue rows are about to be replaced.
    """
    M, R, Q = ReconMatchRow, ReferenceRow, ReconReferenceMoveRow
    account, day = result.account_id, result.day
    before = dict(session.execute(select(R.code, R.id).join(M, M.reference_id == R.id).where(
        M.account_id == account, M.day == day, M.amount > 0, R.state == "settled")
        .distinct()).all())
    before.update(session.execute(select(R.code, R.id).join(Q, Q.reference_id == R.id).where(
        member(session, Q.run_id, earlier), Q.state == "unsettled", R.state == "settled"))
        .all())
    if not before:
        return {}
    paid = {a.code for m in result.matches for a in m.allocations if a.amount > 0}
    gone = {code: rid for code, rid in before.items() if code not in paid}
    if gone:
        elsewhere = set(session.scalars(select(M.reference_id).where(
            member(session, M.reference_id, gone.values()), M.amount > 0,
            or_(M.account_id != account, M.day != day)).distinct()))
        gone = {code: rid for code, rid in gone.items() if rid not in elsewhere}
    return gone


def _sqlite_match_rows(run_id: int, result: DayResult, ref_ids: dict[str, int]) -> list[tuple]:
    """The match rows as SQLite stores them (dates as ISO text, each distinct day converted
    once), in reference id order: each row goes into the ``reference_id`` index next to
    the one before, instead of at random in an index of every match stored (the write
    phase of a million-line night took ~2 s less, docs/benchmarks/reconcile.md)."""
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
    rows.sort(key=_by_reference)
    return rows


def _by_reference(row: tuple) -> int:
    return row[7] or 0  # a refund's row names no reference


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
# ``day`` is the day whose runs manage the row (supersede it when they no longer raise it).
# It moves to the raising day when a superseded row reopens, or when the row's money now
# sits on another day's line (a corrected file moved its batch): else a re-run of the old
# day would supersede what the new day holds. It moves to an earlier day that raises it
# too (a later day held a carried part as a duplicate; a late statement then made the
# line's own day hold it so): else the later day's re-run, no longer carrying the part,
# would supersede what the earlier day holds. It stays when a later day raises it again
# (the earlier day must still be able to let it go). Either way ``day >= line_day`` holds,
# which the loader's look-ups by day rely on.
_MOVES_DAY = ("recon_mismatches.status = 'superseded' "
              "OR recon_mismatches.line_day IS NOT excluded.line_day "
              "OR excluded.day < recon_mismatches.day")


MISMATCH_COLUMNS = ("account_id", "day", "key", "category", "amount", "expected_amount",
                    "line_id", "line_day", "event_id", "batch_id", "reference_code",
                    "suggested", "evidence", "first_run_id", "run_id", "status", "created_at",
                    "updated_at")
# the columns each mismatch has its own value of; the others are the account-day's
_PER_ROW = ("key", "category", "amount", "expected_amount", "line_id", "line_day",
            "event_id", "batch_id", "reference_code", "suggested", "evidence")
_SHARED = {"account_id": ":account", "day": ":day", "first_run_id": ":run", "run_id": ":run",
           "status": "'open'", "created_at": ":stamp", "updated_at": ":stamp"}
_QUOTED = ", ".join(f'"{c}"' for c in MISMATCH_COLUMNS)  # "key" is an SQL keyword
_ON_CONFLICT = (
    'ON CONFLICT (account_id, "key") DO UPDATE SET '
    + ", ".join(f"{c} = excluded.{c}" for c in _REFRESHED)
    + ", status = CASE WHEN recon_mismatches.status = 'superseded' THEN 'open' "
      "ELSE recon_mismatches.status END"
    + f", day = CASE WHEN {_MOVES_DAY} THEN excluded.day ELSE recon_mismatches.day END")
# One statement over a JSON array of the rows: SQLite journals each page it changes once
# for the statement, where one statement per row journaled the ~10 pages each row touches
# (most of a night's temporary-file writes, docs/benchmarks/reconcile.md). ``WHERE true``
# tells the parser that ``ON CONFLICT`` is the upsert's, not a join's.
_SQLITE_UPSERT = (
    f"INSERT INTO recon_mismatches ({_QUOTED}) SELECT "
    + ", ".join(_SHARED.get(c) or f"json_extract(value, '$[{_PER_ROW.index(c)}]')"
                for c in MISMATCH_COLUMNS)
    + " FROM json_each(:rows) WHERE true " + _ON_CONFLICT)
# One row at a time, for values SQLite's JSON functions would cut short (see below)
_SQLITE_UPSERT_ROW = (
    f"INSERT INTO recon_mismatches ({_QUOTED}) VALUES ("
    + ", ".join(_SHARED.get(c) or f":{c}" for c in MISMATCH_COLUMNS) + ") " + _ON_CONFLICT)


def _upsert_mismatches(session: Session, run_id: int, result: DayResult, now: datetime,
                       memos: dict[int, str],
                       sqlite_rows: str | list[tuple] | None = None) -> None:
    X = ReconMismatchRow
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        created_at = X.__table__.c.created_at.type
        stamped = created_at.dialect_impl(conn.dialect).bind_processor(conn.dialect)(now)
        if sqlite_rows is None:
            sqlite_rows = _sqlite_mismatch_rows(result, memos)
        shared = {"account": result.account_id, "day": result.day.isoformat(), "run": run_id,
                  "stamp": stamped}
        # the statement through the driver: no per-row processing
        cur = conn.connection.driver_connection.cursor()
        if isinstance(sqlite_rows, str):
            cur.execute(_SQLITE_UPSERT, {**shared, "rows": sqlite_rows})
        else:
            cur.executemany(_SQLITE_UPSERT_ROW,
                            [{**shared, **dict(zip(_PER_ROW, row, strict=True))}
                             for row in sqlite_rows])
        cur.close()
    else:
        for part in chunks((_mismatch_row(run_id, result, m, now, memos)
                            for m in result.mismatches), WRITE_CHUNK):
            stmt = pg_insert(X.__table__)
            refreshed = {c: stmt.excluded[c] for c in _REFRESHED}
            refreshed["status"] = case((X.__table__.c.status == "superseded", "open"),
                                       else_=X.__table__.c.status)
            old = X.__table__.c
            refreshed["day"] = case(
                (or_(old.status == "superseded",
                     old.line_day.is_distinct_from(stmt.excluded.line_day),
                     stmt.excluded.day < old.day), stmt.excluded.day),
                else_=old.day)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["account_id", "key"], set_=refreshed), part)
    # a carried-over row is a person's "look again later": moot once the run no longer
    # finds it (a corrected settlement file, say); its resolution fields stay. A cleared
    # row the day no longer raises goes too, or a later day would carry its money again.
    session.execute(update(X).where(
        X.account_id == result.account_id, X.day == result.day, X.run_id != run_id,
        X.status.in_(("open", "carried_over", "cleared"))).values(
        status="superseded", updated_at=now))


def _warn_decided_moot(session: Session, previous: int, result: DayResult) -> None:
    """Say loudly when a re-run no longer raises money a person decided to refund or write
    off (an earlier day changed: the duplicate is now the payment, say). The decision
    stays as it was — it is a person's — but it may have sent back money that now pays a
    reference.

    Only rows the day's ``previous`` run (the last that did not fail) still raised: a later
    re-run that finds the decision moot again has nothing new to say."""
    X = ReconMismatchRow
    moot = session.execute(select(X.id, X.key, X.resolution, X.amount).where(
        X.account_id == result.account_id, X.day == result.day, X.run_id == previous,
        X.status == "resolved", X.amount > 0,
        X.resolution.in_(("refund_due", "write_off")))).all()
    for mid, key, resolution, amount in moot:
        log.warning("account %s on %s: mismatch %s (%s, %s VND) was resolved %s, but the "
                    "day no longer holds that money as a mismatch: check whether the refund "
                    "or write-off still stands (`feepay mismatches show %s`)",
                    result.account_id, result.day, mid, key, amount, resolution, mid)


def _sqlite_mismatch_rows(result: DayResult, memos: dict[int, str]) -> str | list[tuple]:
    """The mismatches' own values (:data:`_PER_ROW`), dates as ISO text as SQLite stores
    them: one JSON array of arrays, or the rows themselves when a text holds a NUL
    character — ``json_extract`` would end the text there (SQLite 3.40), and keys cut
    short could even merge two mismatches. Imports refuse a NUL now, but ids a database
    stored before may hold one; the evidence cannot (it is JSON, NUL escaped)."""
    iso = date.isoformat
    days: dict[date, str] = {}
    rows = []
    nul = False
    for m in result.mismatches:
        line_day = m.line_day
        if line_day is not None:
            line_day = days.get(line_day) or days.setdefault(line_day, iso(line_day))
        nul = nul or any("\x00" in v for v in (m.key, m.reference, m.batch_id) if v)
        rows.append((m.key, m.category.value, m.amount, m.expected_amount, m.line_id,
                     line_day, m.event_id, m.batch_id, m.reference, " ".join(m.suggested),
                     _evidence(m, memos)))
    return rows if nul else json.dumps(rows, ensure_ascii=False)


def _clear(session: Session, result: DayResult, now: datetime, *, rerun: bool,
           later_ran: bool) -> None:
    """Clear earlier open mismatches this day resolved: the engine's explicit ``clears``
    and every ``paid_no_money`` whose callback this day paired with money.

    What an earlier run of the day cleared is reopened first (then cleared again if the
    result still clears it): a re-run whose corrected input no longer completes a
    part-payment must give the part back to its ``underpaid`` row, or the money it holds
    would sit in a cleared row that no later day carries."""
    X = ReconMismatchRow
    if rerun:  # a first run of the day has cleared nothing yet
        session.execute(update(X).where(
            X.account_id == result.account_id, X.status == "cleared",
            # every category whose clearing the run recomputes: a carried part and a
            # money_no_callback notice are loaded while cleared by this day or a later one
            X.cleared_day == result.day, X.category.in_(CLEARABLE)).values(
            status=case((X.resolution == "carry_over", "carried_over"), else_="open"),
            cleared_day=None, updated_at=now).execution_options(synchronize_session=False))
    if later_ran:  # else no later day can have cleared anything (a night's first runs)
        _clear_earlier(session, result, now)
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


def _clear_earlier(session: Session, result: DayResult, now: datetime) -> None:
    """Rows a later day cleared first that this (earlier) day clears: they are cleared by
    this day now, so no day between carries a part (or waits for a callback's money) that
    this day already took."""
    X = ReconMismatchRow
    later = (X.account_id == result.account_id) & (X.status == "cleared") & (
        X.cleared_day > result.day)
    if session.scalar(select(X.id).where(later).limit(1)) is None:
        return
    which = []
    if result.clears:
        which.append(member(session, X.key, result.clears))
    if claimed := result.claimed_events():
        which.append(member(session, X.event_id, claimed)
                     & (X.category == Category.PAID_NO_MONEY.value))
    for rows in which:
        session.execute(update(X).where(later, rows).values(
            cleared_day=result.day, updated_at=now)
            .execution_options(synchronize_session=False))


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
