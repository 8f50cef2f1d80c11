"""Reading one account-day's engine input from storage.

Only what the engine needs is read, narrowed by index rather than scanned:

* the account's **credit lines posted on the day** (``ix_statement_lines_account_day``);
  a line whose codes the import already found comes without its memo (the engine does not
  need it; :mod:`reconcile.persist` puts it back into a mismatch's evidence);
* **successful callbacks** of the account in the look-back window, minus those an earlier
  day already paired (with a line, or inside a batch it held);
* **settlement batches** of the account settled within ``batch_lag_days``, minus those an
  earlier day already placed;
* **part-payments carried** from earlier days (open ``underpaid`` mismatches);
* **links** people made for the day's lines;
* the **references** all of these name (any account — that is how *wrong account* is
  seen), plus those a near-miss code could mean;
* for those references, what **earlier days** already matched (``Prior``).

"Earlier" always means *days before this one*: what later days did never changes this
day's input, so re-running a day reproduces its result. (When an earlier day changes,
:mod:`reconcile.stale` marks the later days it concerns.)
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from feepay import reference as codes
from feepay.money import VN_TZ, day_bounds
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_callbacks import PaymentEventRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow
from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementLineRow,
)
from reconcile.models import (
    Batch,
    BatchTxn,
    Carried,
    Category,
    DayInput,
    Expected,
    ManualLink,
    Policy,
    Prior,
    Reported,
    Settled,
    builder,
)
from reconcile.nearmiss import corrections

CHUNK = 10_000  # values per IN (...) list: under SQLite's and psycopg's parameter limits
T = TypeVar("T")
CARRIED_STATUSES = ("open", "carried_over")
ONE_DAY = timedelta(days=1)
_NOT_CLAIMING = (Category.PAID_NO_MONEY.value, Category.MONEY_NO_CALLBACK.value)


@dataclass
class Loaded:
    """The engine input plus what the runner needs to write results back."""

    input: DayInput
    ref_ids: dict[str, int] = field(default_factory=dict)
    batches_seen: str = ""


def chunks(values: Sequence[T] | Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for v in values:
        batch.append(v)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def member(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """``column IN (values)`` with **one** bound parameter, however many values: a
    PostgreSQL array (``= ANY(:v)``) or a SQLite JSON array (``IN (SELECT value FROM
    json_each(:v))``). A million codes cost one parameter, not a million. (Texts holding
    a NUL, which ``json_each`` would cut short, are bound one by one.)"""
    values = sorted(set(values))
    if session.get_bind().dialect.name == "postgresql":
        integer = isinstance(getattr(column, "type", None), Integer) or (
            values and isinstance(values[0], int))
        item = BigInteger() if integer else String()
        return column == any_(bindparam(None, values, type_=ARRAY(item)))
    listed = json.dumps(values)
    cut: set[Any] = set()
    if "\\u0000" in listed:  # json_each would end a text at its NUL: those go bound
        cut = {v for v in values if isinstance(v, str) and "\x00" in v}
        listed = json.dumps([v for v in values if v not in cut])
    clause = column.in_(select(literal_column("value")).select_from(
        func.json_each(bindparam(None, listed, type_=String()))).scalar_subquery())
    return or_(clause, column.in_(sorted(cut))) if cut else clause


def select_in(session: Session, make: Callable[[Any], Any],
              values: Iterable[Any]) -> Iterator[Any]:
    """Rows of ``make(condition)`` where the condition is the column's membership in
    ``values`` (``make`` receives a function column -> clause)."""
    values = list(values)
    if not values:
        return iter(())
    return iter(session.execute(make(lambda column: member(session, column, values))))


def raw(column: Any) -> Any:
    """The column without SQLAlchemy's per-row result processing (see :func:`stamp_reader`)."""
    return type_coerce(column, NullType())


def stamp_reader(session: Session) -> Callable[[Any], datetime | None]:
    """Turn a raw timestamp into an aware datetime: psycopg already returns one; SQLite
    returns the UTC text SQLAlchemy stored. Skipping ``TZDateTime``'s processor per row
    is a third of the loading time for a million rows."""
    if session.get_bind().dialect.name == "postgresql":
        return lambda v: v
    parse = datetime.fromisoformat

    def read(v: Any) -> datetime | None:  # stored as naive UTC text; "+00:00" makes it aware
        return parse(v + "+00:00") if v else None

    return read


def fetch(session: Session, stmt: Any, size: int = 20_000) -> Iterator[tuple]:
    """Plain driver tuples of ``stmt``, streamed: the three big reads (lines, callbacks,
    references) skip SQLAlchemy's row objects, ~3 µs a row. Columns that need a type
    (timestamps) are read with :func:`raw` and converted by the caller."""
    # no stream_results/yield_per: SQLAlchemy would pre-buffer rows the raw cursor then
    # never yields (the sum check caught exactly that)
    cur = session.connection().execute(stmt).cursor
    while rows := cur.fetchmany(size):
        yield from rows


def load_day(session: Session, account_id: int, day: date, policy: Policy) -> Loaded:
    """Everything the engine needs for (account, day), read in one transaction."""
    window_start = day - timedelta(days=policy.lookback_days)
    pool: dict[str, str] = {}  # one str object per code, shared by lines and references
    lines = _lines(session, account_id, day, pool)
    batch_rows = _batch_rows(session, account_id, day, policy)
    batches = _batches(session, batch_rows)
    events = _events(session, account_id, day, window_start, policy, batches, pool)
    batches = [b for b in batches if b.batch_id not in _claimed_batches(
        session, [b.batch_id for b in batches], day)]
    carried = _carried(session, account_id, day, window_start, pool, policy)
    links = _links(session, account_id, day)
    wanted = _codes_named(lines, events, batches, carried, links)
    refs = _references(session, wanted, pool, lines)
    prior = _prior(session, refs, day)
    inp = DayInput(account_id=account_id, day=day, lines=tuple(lines), events=tuple(events),
                   batches=tuple(batches), references=tuple(refs), prior=tuple(prior),
                   carried=tuple(carried), links=tuple(links), policy=policy)
    return Loaded(inp, {r.code: r.id for r in refs}, fingerprint(batch_rows))


# --------------------------------------------------------------------------- settled


def _lines(session: Session, account_id: int, day: date, pool: dict[str, str]) -> list[Settled]:
    L = StatementLineRow
    # in time order, the order the engine walks them: values built in that order sit
    # together in memory, and a million-line day runs a third faster for it
    q = (select(L.id, L.amount, L.memo_raw, raw(L.value_at), L.bank_ref, L.codes)
         .where(L.account_id == account_id, L.posting_date == day, L.direction == "credit")
         .order_by(L.value_at, L.id))
    out = []
    intern = pool.setdefault
    amounts: dict[int, int] = {}
    stamp = stamp_reader(session)
    append, none, settled = out.append, (), builder(Settled)
    for lid, amount, memo, value_at, bank_ref, found in fetch(session, q):
        if not found:
            line_codes = none
        elif " " in found:
            line_codes = tuple(intern(c, c) for c in found.split())
        else:
            line_codes = (intern(found, found),)
        # the import found its codes: the engine needs no memo (evidence gets it back)
        append(settled(lid, day, amounts.setdefault(amount, amount), "" if found else memo,
                       stamp(value_at), bank_ref or None,
                       line_codes))
    return out


def _batch_rows(session: Session, account_id: int, day: date, policy: Policy) -> list[Any]:
    """The account's settlement batches the day may place: settled on it or within the
    batch lag before it."""
    B = SettlementBatchRow
    return list(session.execute(select(B.id, B.import_id, B.batch_id, B.provider,
                                       B.settled_on, B.net_total).where(
        B.account_id == account_id,
        B.settled_on.between(day - timedelta(days=policy.batch_lag_days), day))))


def fingerprint(batch_rows: Iterable[Any]) -> str:
    """What a run read of its batches, as one value: a settlement file imported later —
    new batches, or a correction that replaced one (its row then names the new import) —
    changes it."""
    seen = sorted(f"{r.id}:{r.import_id}:{r.net_total}" for r in batch_rows)
    return hashlib.sha256(" ".join(seen).encode()).hexdigest()[:32]


def batches_fingerprint(session: Session, account_id: int, day: date, policy: Policy) -> str:
    """:func:`fingerprint` of what storage holds now (the scheduler's *up to date* check)."""
    return fingerprint(_batch_rows(session, account_id, day, policy))


def _batches(session: Session, rows: list[Any]) -> list[Batch]:
    X = SettlementTxnRow
    if not rows:
        return []
    txns: dict[int, list[BatchTxn]] = defaultdict(list)
    for r in select_in(session, lambda isin: select(
            X.batch_pk, X.provider_txn_id, X.gross, X.fee, X.net, X.reference, X.paid_at,
            X.kind).where(isin(X.batch_pk)), [r.id for r in rows]):
        txns[r.batch_pk].append(BatchTxn(r.provider_txn_id, r.gross, r.fee, r.net,
                                         r.reference, r.paid_at, r.kind))
    return [Batch(r.batch_id, r.provider, r.settled_on, r.net_total,
                  tuple(sorted(txns[r.id], key=lambda t: (t.kind, t.provider_txn_id))))
            for r in rows]


def _claimed_batches(session: Session, batch_ids: list[str], day: date) -> set[str]:
    """Batches an earlier day already placed (matched, or held as a mismatch)."""
    if not batch_ids:
        return set()
    M, X = ReconMatchRow, ReconMismatchRow
    claimed = {r[0] for r in select_in(session, lambda isin: select(M.batch_id).where(
        isin(M.batch_id), M.day < day).distinct(), batch_ids)}
    claimed |= {r[0] for r in select_in(session, lambda isin: select(X.batch_id).where(
        isin(X.batch_id), X.day < day, X.status != "superseded"), batch_ids)}
    return claimed


# --------------------------------------------------------------------------- reported


def _events(session: Session, account_id: int, day: date, window_start: date,
            policy: Policy, batches: list[Batch], pool: dict[str, str]) -> list[Reported]:
    E = PaymentEventRow
    start, end = business_start(window_start, policy), business_start(day + ONE_DAY, policy)
    columns = (E.id, E.adapter, E.provider_txn_id, E.amount, raw(E.paid_at),
               E.reference_code, E.bank_ref)
    # by index; a callback recorded without a channel carries its reference's account
    own = select(*columns).where(E.status == "success", E.paid_at >= start, E.paid_at < end,
                                 E.account_id == account_id)
    # the same str objects as the lines' codes (bank refs are not pooled: a lookup in a
    # table of a million strings costs more than the few MB it would save)
    intern = pool.setdefault
    stamp = stamp_reader(session)
    reported = builder(Reported)
    rows = fetch(session, own)
    adapters: dict[str, str] = {}  # a handful: their own small table, not the big pool
    events = [reported(eid, adapters.setdefault(adapter, adapter), txn, amount,
                       stamp(paid_at), intern(code, code) if code else None,
                       bank_ref or None, None)
              for eid, adapter, txn, amount, paid_at, code, bank_ref in rows]
    claimed = _claimed_events(session, account_id, day, window_start, events)
    claimed |= _events_in_claimed_batches(session, events, batches, day)
    return [e for e in events if e.id not in claimed] if claimed else events


def _claimed_events(session: Session, account_id: int, day: date, window_start: date,
                    events: list[Reported]) -> set[int]:
    """Which of ``events`` an earlier day paired with money (a match, or a line it held).
    Only this account's runs pair this account's callbacks, so its own rows are enough.

    A match is stored by the day that made it, and a day pairs only callbacks of its own
    window (or a carried part's, older still): none of this window's callbacks is paired
    before it, so older matches are not read (a day's margin for a changed cut-off) — a
    year of them, every night. For mismatches no day bound is exact (a carried part a
    later day holds again keeps its old day but takes the new callback): they are asked
    about the loaded callbacks themselves (``ix_recon_mismatches_event_id``, migration
    0015), not about the account's history, which grows every night."""
    M, X = ReconMatchRow, ReconMismatchRow
    claimed = set(session.scalars(select(M.event_id).where(
        M.account_id == account_id, M.day >= window_start - ONE_DAY, M.day < day,
        M.event_id.is_not(None))))
    # only callbacks no match took (most of the window's older days), asked by callback
    # alone (the planner must not prefer the account's history); the rest of the
    # condition is checked here, on the few rows that hold one of them
    held = select_in(session, lambda member_of: select(
        X.event_id, X.account_id, X.day, X.status, X.category).where(
        X.event_id.is_not(None), member_of(X.event_id)),
        [e.id for e in events if e.id not in claimed])
    claimed.update(eid for eid, acc, raised, status, category in held
                   if acc == account_id and raised < day and status != "superseded"
                   and category not in _NOT_CLAIMING)
    return claimed


def business_start(day: date, policy: Policy) -> datetime:
    """The instant (UTC) business ``day`` begins: local midnight, or the previous day's
    cut-off when the account has one (see :mod:`reconcile.days`)."""
    if policy.cutoff is None:
        return day_bounds(day)[0]
    local = datetime.combine(day - ONE_DAY, policy.cutoff, VN_TZ)
    return local.astimezone(UTC)


def _events_in_claimed_batches(session: Session, events: list[Reported],
                               batches: list[Batch], day: date) -> set[int]:
    """Callbacks whose transaction sits in a batch an earlier day already placed."""
    B, X = SettlementBatchRow, SettlementTxnRow
    # the gateways among the callbacks' providers (a bank push settles no batches), each
    # asked through the (provider, txn) index; a DISTINCT would read every transaction
    gateways = {p for p in {e.provider for e in events} if session.scalar(
        select(X.id).where(X.provider == p).limit(1)) is not None}
    keys = {(e.provider, e.provider_txn_id): e.id for e in events if e.provider in gateways}
    in_batch: dict[tuple[str, str], str] = {}
    for gateway in sorted(gateways):
        txns = [t for (p, t) in keys if p == gateway]
        in_batch.update(((gateway, txn), batch_id) for txn, batch_id in session.execute(
            select(X.provider_txn_id, B.batch_id).join(B, B.id == X.batch_pk).where(
                X.provider == gateway, member(session, X.provider_txn_id, txns))))
    if not in_batch:
        return set()
    current = {b.batch_id for b in batches}
    candidates = {b for b in in_batch.values() if b not in current}
    claimed = _claimed_batches(session, sorted(candidates), day)
    return {keys[k] for k, b in in_batch.items() if b in claimed and k in keys}


# --------------------------------------------------------------------------- earlier days


def _carried(session: Session, account_id: int, day: date, window_start: date,
             pool: dict[str, str], policy: Policy) -> list[Carried]:
    X, L = ReconMismatchRow, StatementLineRow
    q = (select(X.key, X.reference_code, X.event_id, X.amount, X.batch_id, X.evidence,
                L.id, L.posting_date, L.amount.label("line_amount"), L.memo_raw, L.value_at,
                L.bank_ref)
         .join(L, L.id == X.line_id)
         .where(X.account_id == account_id, X.category == Category.UNDERPAID.value,
                X.day >= window_start,  # raised no earlier than its line: by index
                X.line_day >= window_start, X.line_day < day,
                or_(X.status.in_(CARRIED_STATUSES),
                    and_(X.status == "cleared", X.cleared_day >= day))))
    rows = session.execute(q).all()
    # a gateway part (its key is unique on the account): what its evidence says it was
    parts = {r.key: (r.batch_id, _held_txn(r.evidence, r.amount, r.reference_code))
             for r in rows if r.batch_id}
    txns = _carried_txns(session, account_id,
                         {(b, t.provider_txn_id) for b, t in parts.values()},
                         [r.posting_date for r in rows if r.batch_id], policy) if parts else {}
    out = []
    for r in rows:
        code = pool.setdefault(r.reference_code, r.reference_code)
        line = Settled(r.id, r.posting_date, r.line_amount, r.memo_raw, r.value_at,
                       r.bank_ref, (code,))
        txn = None
        if r.key in parts:  # its own money, not the batch's credit
            batch_id, held = parts[r.key]
            txn = txns.get((batch_id, held.provider_txn_id)) or held
        out.append(Carried(line, code, r.key, r.event_id, r.batch_id, txn))
    return out


def _held_txn(evidence: str | None, amount: int, code: str) -> BatchTxn:
    """The gateway transaction a held part was, as its evidence recorded it: the net held
    and the gross it covers — what the part carries should the settlement rows no longer
    hold it (a correction replaced the batch). A part an older version held recorded only
    the transaction's id: its net then covers only itself."""
    ev = json.loads(evidence or "{}")
    gross, fee = ev.get("gross"), ev.get("fee")
    if not (isinstance(gross, int) and isinstance(fee, int) and gross - fee == amount):
        gross, fee = amount, 0
    return BatchTxn(str(ev.get("txn_id") or ""), gross, fee, amount, code)


def _carried_txns(session: Session, account_id: int, parts: set[tuple[str, str]],
                  days: list[date], policy: Policy) -> dict[tuple[str, str], BatchTxn]:
    """The settlement transactions carried parts were, by (batch id, transaction id):
    batches of the account settled within the batch lag before the parts' line ``days``
    (a batch id names one batch: the import refuses one another provider already used)."""
    B, T = SettlementBatchRow, SettlementTxnRow
    q = (select(B.batch_id, T.provider_txn_id, T.gross, T.fee, T.net, T.reference, T.paid_at,
                T.kind).join(T, T.batch_pk == B.id)
         .where(B.account_id == account_id,
                B.settled_on.between(min(days) - timedelta(days=policy.batch_lag_days),
                                     max(days)),
                B.batch_id.in_(sorted({b for b, _ in parts})),
                T.kind == "payment"))  # a refund may reuse its payment's id
    return {(r.batch_id, r.provider_txn_id): BatchTxn(r.provider_txn_id, r.gross, r.fee, r.net,
                                                      r.reference, r.paid_at, r.kind)
            for r in session.execute(q) if (r.batch_id, r.provider_txn_id) in parts}


def _links(session: Session, account_id: int, day: date) -> list[ManualLink]:
    X = ReconMismatchRow
    q = select(X.line_id, X.linked_reference, X.linked_batch).where(
        X.account_id == account_id, X.day >= day,  # raised no earlier than its line
        X.resolution == "link", X.line_day == day, X.line_id.is_not(None),
        or_(X.linked_reference.is_not(None), X.linked_batch.is_not(None)))
    return [ManualLink(r.line_id, r.linked_reference, r.linked_batch)
            for r in session.execute(q)]


def _prior(session: Session, refs: list[Expected], day: date) -> list[Prior]:
    if not refs:
        return []
    M, X = ReconMatchRow, ReconMismatchRow
    by_id = {r.id: r.code for r in refs}
    sums: dict[str, tuple[int, bool]] = {}
    for r in select_in(session, lambda isin: select(
            M.reference_id, func.sum(M.amount), func.count(M.event_id))
            .where(isin(M.reference_id), M.day < day).group_by(M.reference_id), by_id):
        sums[by_id[r[0]]] = (int(r[1] or 0), r[2] > 0)
    notices: dict[str, list[str]] = defaultdict(list)
    # open notices, and those this day or a later one cleared (a re-run of the clearing
    # day must see them to clear them again; see reconcile.persist._clear). The status is
    # checked here, not in SQL: a status condition there lets SQLite read every open
    # notice of every account instead of the few rows naming these references.
    for r in select_in(session, lambda isin: select(
            X.reference_code, X.key, X.status, X.cleared_day).where(
            isin(X.reference_code), X.day < day,
            X.category == Category.MONEY_NO_CALLBACK.value), sums):
        if r.status == "open" or (r.status == "cleared" and r.cleared_day >= day):
            notices[r.reference_code].append(r.key)
    return [Prior(code, allocated, has_event, tuple(sorted(notices.get(code, ()))))
            for code, (allocated, has_event) in sorted(sums.items())]


# --------------------------------------------------------------------------- expected


def _codes_named(lines: list[Settled], events: list[Reported], batches: list[Batch],
                 carried: list[Carried], links: list[ManualLink]) -> set[str]:
    wanted: set[str] = set()
    for line in lines:
        if line.codes:
            wanted.update(line.codes)
        elif line.memo:
            for miss in codes.near_misses(line.memo):
                wanted.update(corrections(miss))
    wanted.update(e.reference for e in events if e.reference)
    wanted.update(t.reference for b in batches for t in b.txns if t.reference)
    wanted.update(c.code for c in carried)
    wanted.update(x.code for x in links if x.code)
    return wanted


def _references(session: Session, wanted: set[str], pool: dict[str, str],
                lines: list[Settled]) -> list[Expected]:
    """The references ``wanted`` names, built in the order ``lines`` name them (the
    engine's order: see :func:`_lines`), then the rest."""
    R = ReferenceRow
    intern = pool.setdefault
    small: dict[object, object] = {}
    stamp = stamp_reader(session)
    if not wanted:
        return []
    named = member(session, R.code, wanted)
    if session.get_bind().dialect.name == "sqlite":
        # ids first (the code index covers them), then the rows in id order: the table is
        # read page after page instead of at random, ~40 % less time on a million refs
        named = R.id.in_(select(R.id).where(named).scalar_subquery())
    q = select(R.id, R.code, R.account_id, R.amount_due, raw(R.expires_at), R.state,
               raw(R.cancelled_at)).where(named)
    rows = {r[1]: r for r in fetch(session, q)}
    expected, take = builder(Expected), rows.pop
    # c: the lines' own (pooled) code object
    ordered = [(c, row) for line in lines for c in line.codes
               if (row := take(c, None)) is not None]
    # named only by callbacks, batches, near misses, links
    ordered += [(intern(code, code), row) for code, row in rows.items()]
    return [expected(rid, code, account, small.setdefault(due, due), stamp(expires),
                     small.setdefault(state, state), stamp(cancelled))
            for code, (rid, _, account, due, expires, state, cancelled) in ordered]
