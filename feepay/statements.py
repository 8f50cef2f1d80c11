"""Statement import: validate a whole file, de-duplicate its lines exactly, store atomically.

An adapter (``adapters.statements``) turns a file into a :class:`StatementStream`: facts
from the file's header and footer (:class:`StatementInfo` — account number, period,
opening and closing balance) and a one-shot iterator of :class:`Line` values.
:meth:`Statements.import_stream` then works in two phases:

1. **Check everything, store nothing.** Every line is read (the adapter raises
   :class:`~feepay.exceptions.ParseError` naming file, row, column and reason), its memo
   normalised once (:func:`feepay.reference.normalize_memo`, with an inline ASCII fast
   path), the reference codes found in that normalised form
   (:func:`feepay.reference.codes_in_normalized`), its fingerprint and occurrence computed, and the
   prepared row staged in a temporary table of the import's own database connection
   (memory stays flat for a million lines; nobody else sees it; SQLite takes no write lock
   yet). Then the account in the file must be the account named, and, where the file
   states both balances, opening + credits − debits must equal closing.
2. **Store in one transaction.** The import record, then one
   ``INSERT INTO statement_lines … SELECT … FROM <staging> ON CONFLICT (account,
   fingerprint, occurrence) DO NOTHING``, the counts and an audit entry. Any error rolls
   back all and drops the staging table. SQLite fills the staging table with
   ``executemany`` into its temp database; PostgreSQL with ``COPY``.

Line fingerprint (documented in docs/statements.md)
---------------------------------------------------
``sha256("posting date|value time|direction|amount|bank reference|normalised memo")``,
first 32 hex digits, where *posting date* is ISO ``YYYY-MM-DD``, *value time* is the
value timestamp in UTC at the precision the file gives it — ``YYYY-MM-DD HH:MM``, then
``:SS`` when the seconds are not zero and ``.ffffff`` when the microseconds are not zero
(:func:`fingerprint_time`) — or empty, *amount* the integer VND, *bank reference* as printed
(or empty), *normalised memo* the memo upper-cased without diacritics, spaces and
punctuation. The **occurrence** is the line's rank among the lines of the same file with
the same fingerprint (1, 2, …).

So: the same file twice stores nothing new; overlapping statements (1–3 Nov, then
2–4 Nov) store only the new lines; two genuinely identical lines in one file (same amount,
memo and time) are occurrences 1 and 2 and both stay; two such lines at 09:05:10 and
09:05:40 in two files that do not overlap are two lines (seconds count when the file has
them). The rule assumes each file holds *all* copies of identical lines, which is true of
bank exports (they cover whole days or time ranges, never half of one second). Writing the
time without trailing zero fields keeps the fingerprints of formats that give minutes only
(and of lines at ``HH:MM:00``) what they were when the time was cut to the minute.

>>> fingerprint(Line(1, date(2025, 11, 3), 50000, "credit", memo="FP 7K3M"))
'ae866a6c6010aa0b4cdb28e03efe8c0d'
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from hashlib import sha256
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feepay.audit import checked_actor, checked_reason
from feepay.banks import mask
from feepay.exceptions import Conflict, ParseError, ValidationError
from feepay.models import SettlementBatch, SettlementFile, Statement, StatementLine
from feepay.money import VN_TZ, format_vnd, now_utc
from feepay.reference import NON_ALNUM, codes_in_normalized, find_in_text, normalize_memo
from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementImportRow,
    StatementLineRow,
)

if TYPE_CHECKING:
    from feepay.api import FeePay

log = logging.getLogger(__name__)

CREDIT = "credit"
DEBIT = "debit"
STAGE_CHUNK = 10_000
SQLITE_CACHE_KIB = 64 * 1024  # page cache while bulk inserting
_MASK_CHARS = re.compile(r"[*xX•#]+")
# Vietnam has kept UTC+7 without daylight saving since 1975, so for statement dates a fixed
# offset is exact; adapters use it because it is much cheaper than a ZoneInfo per line.
VN_FIXED = timezone(timedelta(hours=7), "+07")


class Line(NamedTuple):
    """One statement line as an adapter yields it (a cheap tuple; see StatementLine)."""

    line_no: int
    posting_date: date
    amount: int  # >= 0, VND
    direction: str  # CREDIT or DEBIT
    value_at: datetime | None = None
    bank_ref: str | None = None
    memo: str = ""
    counterparty_name: str | None = None
    counterparty_account: str | None = None

    def to_model(self) -> StatementLine:
        return StatementLine(**self._asdict())


@dataclass
class StatementInfo:
    """Facts about the whole file. Adapters fill it while reading (a footer comes last)."""

    source: str
    format: str
    account_number: str | None = None
    bank_bin: str | None = None
    currency: str = "VND"
    period_start: date | None = None
    period_end: date | None = None
    opening_balance: int | None = None
    closing_balance: int | None = None


@dataclass
class StatementStream:
    """What a statement adapter returns: the file's facts and its lines, read lazily."""

    info: StatementInfo
    lines: Iterator[Line]

    def to_statement(self) -> Statement:
        """Read everything into the pydantic :class:`~feepay.models.Statement`."""
        lines = tuple(line.to_model() for line in self.lines)
        i = self.info
        return Statement(source=i.source, format=i.format, account_number=i.account_number,
                         currency=i.currency, period_start=i.period_start,
                         period_end=i.period_end, opening_balance=i.opening_balance,
                         closing_balance=i.closing_balance, lines=lines, bank_bin=i.bank_bin)


@dataclass
class ImportResult:
    """What one import did. ``new + duplicates == lines``."""

    import_id: int
    kind: str
    format: str
    file_name: str
    account_id: int
    lines: int
    new: int
    duplicates: int
    period_start: date | None = None
    period_end: date | None = None
    opening_balance: int | None = None
    closing_balance: int | None = None
    credits: int = 0
    debits: int = 0
    batches: int = 0
    replaced_batches: list[str] = field(default_factory=list)  # batch ids a correction replaced
    warnings: list[str] = field(default_factory=list)
    seconds_read: float = 0.0  # read and check the whole file (no lock held)
    seconds_store: float = 0.0  # the storing transaction

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# -- pure helpers ---------------------------------------------------------------------------
def fingerprint(line: Line, memo_norm: str | None = None) -> str:
    """The documented line fingerprint (32 hex digits); see the module docstring."""
    if memo_norm is None:
        memo_norm = normalize_memo(line.memo)
    return _digest(line, line.posting_date.isoformat(), memo_norm).hex()


def _digest(line: Line, day: str, memo_norm: str) -> bytes:
    key = (f"{day}|{fingerprint_time(_SqliteStamp()(line.value_at))}|{line.direction}|"
           f"{line.amount}|{line.bank_ref or ''}|{memo_norm}")
    return hashlib.sha256(key.encode("utf-8")).digest()[:16]


def fingerprint_time(utc: str | None) -> str:
    """The fingerprint's value time from the stored UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Exact, but written without trailing zero fields: ``HH:MM`` when seconds and microseconds
    are zero, ``HH:MM:SS`` when only the microseconds are, else the whole text. So a file
    that gives seconds keeps them (09:05:10 and 09:05:40 are two lines), while a format that
    gives minutes only writes ``HH:MM`` as before (see docs/statements.md for upgrading a
    database that holds lines fingerprinted by the older, minute-cut rule).

    >>> [fingerprint_time(f"2025-11-03 02:05:{s}") for s in ("00.000000", "10.000000")]
    ['2025-11-03 02:05', '2025-11-03 02:05:10']
    """
    if not utc:
        return ""
    if utc.endswith(".000000"):
        return utc[:16] if utc[17:19] == "00" else utc[:19]
    return utc


_MMSS = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]
_SEVEN_HOURS = timedelta(hours=7)


class _SqliteStamp:
    """Aware moment → the UTC text SQLAlchemy's SQLite DateTime stores
    (``YYYY-MM-DD HH:MM:SS.ffffff``). Formatting datetimes is a large share of the per-line
    cost of a million-line import, so the ``YYYY-MM-DD HH:`` part is cached per local hour
    (Vietnam time is UTC+7 without daylight saving since 1975) and ``MM:SS`` is a table."""

    def __init__(self) -> None:
        self.hours: dict[tuple[date, int], str] = {}

    def __call__(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        if (moment.tzinfo is not VN_FIXED and moment.tzinfo is not VN_TZ) or moment.year < 1976:
            u = moment.astimezone(UTC)
            return (f"{u.date().isoformat()} {u.hour:02d}:{_MMSS[u.minute * 60 + u.second]}."
                    f"{u.microsecond:06d}")
        key = (moment.date(), moment.hour)
        head = self.hours.get(key)
        if head is None:
            u = moment - _SEVEN_HOURS  # same tzinfo: the fields are now UTC's
            head = self.hours[key] = f"{u.date().isoformat()} {u.hour:02d}:"
        micro = moment.microsecond
        return (head + _MMSS[moment.minute * 60 + moment.second]
                + (f".{micro:06d}" if micro else ".000000"))


def _sqlite_stamp(moment: datetime | None) -> str | None:
    return _SqliteStamp()(moment)


def account_matches(in_file: str, expected: str) -> bool:
    """Does the account number printed in a file name the expected account?

    Tolerates a bank prefix before ``/`` (MT940 ``:25:970436/0011001234567``), spaces, dots
    and dashes, and masked digits (``0071****9735``), which some exports print.
    """
    text = in_file.strip().rsplit("/", 1)[-1]
    text = re.sub(r"[\s.\-]", "", text)
    if _MASK_CHARS.search(text):
        pattern = "".join(r"\d+" if _MASK_CHARS.fullmatch(part) else re.escape(part)
                          for part in re.split(f"({_MASK_CHARS.pattern})", text) if part)
        return re.fullmatch(pattern, expected) is not None
    return text == expected


def check_balance(info: StatementInfo, credits: int, debits: int) -> None:
    """Refuse a file whose balances do not add up: opening + credits − debits = closing."""
    if info.opening_balance is None or info.closing_balance is None:
        return
    computed = info.opening_balance + credits - debits
    if computed != info.closing_balance:
        raise ParseError(
            f"balances do not add up: opening {format_vnd(info.opening_balance)} + credits "
            f"{format_vnd(credits)} − debits {format_vnd(debits)} = {format_vnd(computed)}, "
            f"but the closing balance is {format_vnd(info.closing_balance)} "
            f"(difference {format_vnd(info.closing_balance - computed)})",
            source=info.source, column="closing balance")


# -- phase 1: read, check, stage ------------------------------------------------------------
@dataclass
class _Prepared:
    rows: int = 0
    credits: int = 0
    debits: int = 0
    first: date | None = None
    last: date | None = None
    read_seconds: float = 0.0


def _prepare(stream: StatementStream, on_first: Callable[[], None], staging: _Staging,
             for_sqlite: bool) -> _Prepared:
    """Consume the stream: normalise, fingerprint, count occurrences, stage the rows.

    A staged row is (line_no, posting_date, value_at, amount, direction, bank_ref,
    memo_raw, memo_norm, codes, counterparty_name, counterparty_account, fingerprint,
    occurrence); value_at is already SQLite's UTC text when storing into SQLite.
    """
    out = _Prepared()
    seen: dict[bytes, int] = {}
    chunk: list[tuple] = []
    append = chunk.append
    stamp = _SqliteStamp()
    credits = debits = 0
    first = last = None
    days: dict[date, str] = {}
    lines = iter(stream.lines)
    for line in lines:
        on_first()
        lines = itertools.chain((line,), lines)
        break
    for line in lines:
        line_no, day, amount, direction, moment, ref, memo, cp_name, cp_account = line
        if "\x00" in memo or (ref and "\x00" in ref) or (cp_name and "\x00" in cp_name) or (
                cp_account and "\x00" in cp_account):  # inline: a million-line hot loop
            _check_no_nul(stream.info.source, line_no, memo=memo, bank_ref=ref,
                        counterparty_name=cp_name, counterparty_account=cp_account)
        # normalise once (ASCII fast path), store it and scan it for codes
        norm_b = (memo.upper().encode().translate(None, NON_ALNUM) if memo.isascii()
                  else normalize_memo(memo).encode())
        norm = norm_b.decode()
        codes = " ".join(codes_in_normalized(norm_b)) if b"FP" in norm_b else ""
        day_text = days.get(day)
        if day_text is None:
            day_text = days[day] = day.isoformat()
            first = day if first is None or day < first else first
            last = day if last is None or day > last else last
        utc = stamp(moment)  # stored (SQLite) and, exactly, in the fingerprint
        digest = sha256(f"{day_text}|{fingerprint_time(utc)}|{direction}|{amount}|"
                        f"{ref or ''}|{norm}".encode()).digest()[:16]
        occurrence = seen.get(digest, 0) + 1
        seen[digest] = occurrence
        if direction == CREDIT:
            credits += amount
        else:
            debits += amount
        append((line_no, day_text, utc if for_sqlite else moment, amount, direction, ref,
                memo, norm, codes, cp_name, cp_account, digest.hex(), occurrence))
        if len(chunk) >= STAGE_CHUNK:
            staging.add(chunk)
            out.rows += len(chunk)
            chunk = []
            append = chunk.append
    if chunk:
        staging.add(chunk)
        out.rows += len(chunk)
    staging.finish()
    out.credits, out.debits, out.first, out.last = credits, debits, first, last
    return out


def _check_no_nul(source: str, line: int | None, **texts: str | None) -> None:
    """Refuse a row whose text holds a NUL character: a damaged file, which PostgreSQL
    could not store at all and SQLite's JSON functions would cut short. Names the field
    in words: the file's own header for it is not known here. Returns if none does."""
    field = next((name for name, text in texts.items() if text and "\x00" in text), None)
    if field is not None:
        raise ParseError(f"the {field.replace('_', ' ')} holds a NUL character (a damaged "
                         "file?)", source=source, line=line)


# -- phase 2: staging table → statement_lines ------------------------------------------------
_LINE_COLUMNS = ("account_id", "import_id", "line_no", "posting_date", "value_at", "amount",
                 "direction", "bank_ref", "memo_raw", "memo_norm", "codes", "counterparty_name",
                 "counterparty_account", "fingerprint", "occurrence")
_STAGED = ", ".join(_LINE_COLUMNS[2:])
_STAGE = "feepay_import_stage"


class _Staging:
    """Checked rows wait in a temporary table of the import's own connection — invisible to
    everyone else and dropped on failure — until the whole file has been read; then one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` stores the new ones."""

    def add(self, rows: list[tuple]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """All rows added (waits for a background writer)."""

    def store(self, conn: Connection, account_id: int, import_id: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the staging table (also after a failure)."""


class _SqliteStaging(_Staging):
    """SQLite: a TEMP table — in SQLite's separate temp database, so no lock is taken on the
    main database file while a big file is read and checked; other writers carry on."""

    def __init__(self, conn: Connection) -> None:
        self.raw = conn.connection.dbapi_connection
        self.cur = self.raw.cursor()
        self.cur.execute(f"DROP TABLE IF EXISTS temp.{_STAGE}")
        # No rollback journal for the temp database while staging (≈ 40 % faster inserts):
        # a failed import drops the staging table anyway. Restored in close().
        self.cur.execute("PRAGMA temp.journal_mode=OFF")
        self.cur.execute(f"CREATE TEMP TABLE {_STAGE} AS SELECT {_STAGED} "
                         "FROM main.statement_lines WHERE 0")
        marks = ", ".join("?" * (len(_LINE_COLUMNS) - 2))
        self.sql = f"INSERT INTO temp.{_STAGE} VALUES ({marks})"

    def add(self, rows: list[tuple]) -> None:
        # (A background writer thread was tried: the GIL hand-over per row made it slower.)
        self.cur.execute("BEGIN")
        self.cur.executemany(self.sql, rows)
        self.cur.execute("COMMIT")

    def store(self, conn: Connection, account_id: int, import_id: int) -> int:
        cur = self.raw.cursor()
        try:
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # the unique index fits
            cur.execute(f"INSERT INTO statement_lines ({', '.join(_LINE_COLUMNS)}) "
                        f"SELECT {int(account_id)}, {int(import_id)}, {_STAGED} "
                        f"FROM temp.{_STAGE} WHERE true ORDER BY rowid "
                        "ON CONFLICT (account_id, fingerprint, occurrence) DO NOTHING")
            return cur.rowcount
        finally:
            cur.execute("PRAGMA cache_size=-2000")
            cur.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.raw.in_transaction:
                self.cur.execute("ROLLBACK")
            self.cur.execute(f"DROP TABLE IF EXISTS temp.{_STAGE}")
            self.cur.execute("PRAGMA temp.journal_mode=DELETE")
            self.cur.close()


class _PostgresStaging(_Staging):
    """PostgreSQL: ``COPY`` into a temporary table (the server parses it on its own core
    while feepay reads on), inside the transaction that will store; dropped at its end."""

    def __init__(self, conn: Connection) -> None:
        conn.begin()  # one transaction from staging to commit; MVCC: nobody waits on it
        self.raw = conn.connection.dbapi_connection
        with self.raw.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS "
                        f"SELECT {_STAGED} FROM statement_lines WITH NO DATA")

    def add(self, rows: list[tuple]) -> None:
        with self.raw.cursor() as cur, cur.copy(f"COPY {_STAGE} ({_STAGED}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def store(self, conn: Connection, account_id: int, import_id: int) -> int:
        with self.raw.cursor() as cur:
            cur.execute(f"INSERT INTO statement_lines ({', '.join(_LINE_COLUMNS)}) "
                        f"SELECT %s, %s, {_STAGED} FROM {_STAGE} "
                        "ON CONFLICT (account_id, fingerprint, occurrence) DO NOTHING",
                        (account_id, import_id))
            return cur.rowcount


def _dialect_insert(session: Session):  # noqa: ANN202 - sqlite/postgresql insert()
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# -- settlement batches: storing and replacing ---------------------------------------------
_HOW_TO_REPLACE = ("If this file is the provider's correction, import it again with a reason "
                   "(`feepay statements import FILE --account ID --replace-batches REASON`); "
                   "the stored version is kept in the audit log")
# what a replacement rewrites in the batch row (provider, batch id and account stay)
_REPLACED_COLUMNS = ("import_id", "settled_on", "gross_total", "fee_total", "net_total",
                     "txn_count")


@dataclass
class _Replacing:
    """A person's request to replace stored batches by this (corrected) file."""

    actor: str
    reason: str
    file_name: str
    file_sha256: str
    replaced: list[str] = field(default_factory=list)  # batch ids, in file order
    # the days the replaced versions settled on: their account-days placed them (or may
    # have), so the import's period covers them and the scheduler re-checks those days
    old_days: list[date] = field(default_factory=list)

    @classmethod
    def make(cls, reason: str | None, actor: str, file_name: str,
             file_sha256: str) -> _Replacing | None:
        """None when no replacement is asked; else checked like every human action: a
        reason and an actor (1–80 characters) are required."""
        if reason is None:
            return None
        reason = checked_reason(reason, field="replace_reason", missing=(
            "replacing stored batches needs a reason (e.g. who sent the corrected file "
            "and why)"))
        actor = checked_actor(actor, missing="replacing stored batches needs the acting "
                                             "person (1–80 characters)")
        return cls(actor, reason, file_name, file_sha256)


def _batch_values(batch: SettlementBatch, account_id: int, import_id: int) -> dict:
    """The ``settlement_batches`` row the file's batch makes."""
    return {"import_id": import_id, "account_id": account_id, "provider": batch.provider,
            "batch_id": batch.batch_id, "settled_on": batch.settled_on,
            "gross_total": sum(t.gross for t in batch.transactions),
            "fee_total": sum(t.fee for t in batch.transactions),
            "net_total": batch.net_total, "txn_count": len(batch.transactions)}


def _insert_txns(s: Session, batch: SettlementBatch, pk: int, import_id: int) -> int:
    """Insert the batch's transactions not stored yet (by provider id); return how many."""
    if not batch.transactions:
        return 0
    rows = [{"batch_pk": pk, "import_id": import_id, "provider": batch.provider,
             "provider_txn_id": t.provider_txn_id, "kind": t.kind,
             "order_ref": t.reference,
             "reference": (find_in_text(t.reference) or [None])[0] if t.reference else None,
             "gross": t.gross, "fee": t.fee, "net": t.net, "paid_at": t.paid_at,
             "line_no": t.line_no} for t in batch.transactions]
    stmt = (_dialect_insert(s)(SettlementTxnRow)
            .on_conflict_do_nothing(index_elements=["provider", "provider_txn_id", "kind"])
            .returning(SettlementTxnRow.id))
    return len(s.connection().execute(stmt, rows).all())


def _check_batch_id_free(s: Session, batch: SettlementBatch) -> None:
    """Refuse a batch whose id another provider already used (Conflict).

    Reconciliation tells batches apart by their id alone — a match, a held part, a
    claimed batch name it without the provider — so two providers' batches under one id
    would be taken for each other. The unique index on ``batch_id`` (0014) decides, also
    between two imports at the same moment; this read only gives the reason first."""
    B = SettlementBatchRow
    other = s.scalar(select(B.provider).where(B.batch_id == batch.batch_id,
                                              B.provider != batch.provider).limit(1))
    if other is not None:
        raise _batch_id_taken(batch, other)


def _batch_id_taken(batch: SettlementBatch, other: str | None) -> Conflict:
    """The refusal for a batch id another provider holds (``other``, when the read saw it)."""
    who = f"a {other} batch" if other else "another provider's batch"
    return Conflict(
        f"{batch.provider} batch {batch.batch_id}: {who} with the same id is "
        "already stored, and reconciliation tells batches apart by their id; nothing was "
        "imported. A settlement profile without a `provider` stores its batches under the "
        "profile's name: give it the gateway's. Otherwise report it.", field="batch_id")


def _check_same_account(old: SettlementBatchRow, batch: SettlementBatch,
                        account_id: int) -> None:
    """A correction fixes a batch's contents; money paid into one account never moves."""
    if old.account_id != account_id:
        raise Conflict(
            f"{batch.provider} batch {batch.batch_id} is stored in account {old.account_id}; "
            f"a corrected file cannot move it into account {account_id}. Nothing was "
            "imported", field="batch_id")


def _txn_facts(provider_txn_id: str, kind: str, order_ref: str | None, gross: int, fee: int,
               net: int, paid_at: datetime | None) -> tuple:
    """What a transaction says, whichever file line it sits on (for comparing versions)."""
    return (provider_txn_id, kind, order_ref, gross, fee, net, paid_at)


def _same_batch(old: SettlementBatchRow, old_txns: list, batch: SettlementBatch) -> bool:
    """Whether the file's batch says exactly what is stored (day, total, transactions)."""
    if (old.settled_on, old.net_total) != (batch.settled_on, batch.net_total):
        return False
    stored = Counter(_txn_facts(t.provider_txn_id, t.kind, t.order_ref, t.gross, t.fee,
                                t.net, t.paid_at) for t in old_txns)
    return stored == Counter(_txn_facts(t.provider_txn_id, t.kind, t.reference, t.gross,
                                        t.fee, t.net, t.paid_at) for t in batch.transactions)


def _batch_snapshot(old: SettlementBatchRow, old_txns: list) -> dict:
    """The stored batch and its transactions as plain JSON values, for the audit log."""
    txns = [{"id": t.id, "import_id": t.import_id, "line_no": t.line_no,
             "provider_txn_id": t.provider_txn_id, "kind": t.kind, "order_ref": t.order_ref,
             "reference": t.reference, "gross": t.gross, "fee": t.fee, "net": t.net,
             "paid_at": t.paid_at.isoformat() if t.paid_at else None} for t in old_txns]
    return {"import_id": old.import_id, "settled_on": old.settled_on.isoformat(),
            "gross_total": old.gross_total, "fee_total": old.fee_total,
            "net_total": old.net_total, "txn_count": old.txn_count, "transactions": txns}


# -- the service ---------------------------------------------------------------------------
class Statements:
    """Import statements and settlement files into a collection account; list imports."""

    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    # account checks ------------------------------------------------------------------------
    def _expected(self, account_id: int) -> tuple[str, str]:
        number = self.fp.accounts.full_number(account_id)  # NotFound for a wrong id
        return number, self.fp.accounts.get(account_id).bank_bin

    @staticmethod
    def _check_account(source: str, account_id: int, expected: tuple[str, str],
                       in_file: str | None, bank_bin: str | None) -> None:
        number, bin_code = expected
        if in_file and not account_matches(in_file, number):
            raise ValidationError(
                f"{source}: the file is for account {mask(re.sub(r'[^0-9*xX•]', '', in_file))}"
                f", not account {account_id} ({mask(number)}); nothing was imported",
                field="account")
        if bank_bin and bank_bin != bin_code:
            from feepay.banks import BANKS

            def name(b: str) -> str:
                return BANKS[b].short_name if b in BANKS else b

            raise ValidationError(
                f"{source}: this is a {name(bank_bin)} export but account {account_id} is at "
                f"{name(bin_code)}; nothing was imported", field="account")

    # statements ------------------------------------------------------------------------------
    def import_stream(self, stream: StatementStream, account_id: int, *, file_name: str,
                      file_sha256: str, file_size: int, actor: str = "system") -> ImportResult:
        """Validate the whole stream, then store its new lines atomically.

        Raises:
            ParseError: a bad row, or balances that do not add up (nothing stored).
            ValidationError: the file is for another account or bank (nothing stored).
            NotFound: no such account.
        """
        info = stream.info
        expected = self._expected(account_id)

        def check_header() -> None:
            _check_no_nul(info.source, None, account_number=info.account_number)
            self._check_account(info.source, account_id, expected, info.account_number,
                                info.bank_bin)

        with self.fp.db.engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            staging = _PostgresStaging(conn) if postgres else _SqliteStaging(conn)
            try:
                started = time.perf_counter()
                prepared = _prepare(stream, check_header, staging, for_sqlite=not postgres)
                prepared.read_seconds = time.perf_counter() - started
                check_header()  # account numbers printed only in a footer
                if info.currency.upper() not in ("VND", "VNĐ", "704"):
                    raise ParseError(f"currency {info.currency}: only VND accounts are "
                                     "supported", source=info.source, column="currency")
                check_balance(info, prepared.credits, prepared.debits)
                return self._store(conn, staging, stream, prepared, account_id, file_name,
                                   file_sha256, file_size, actor)
            finally:
                staging.close()

    def _store(self, conn: Connection, staging: _Staging, stream: StatementStream,
               prepared: _Prepared, account_id: int, file_name: str, file_sha256: str,
               file_size: int, actor: str) -> ImportResult:
        """Phase 2, one transaction: import record, new lines, counts, audit entry."""
        info = stream.info
        started = time.perf_counter()
        start = info.period_start or prepared.first
        end = info.period_end or prepared.last
        trans = conn.get_transaction() or conn.begin()  # SQLite: BEGIN IMMEDIATE here
        try:
            with Session(bind=conn, expire_on_commit=False) as s:
                row = StatementImportRow(
                    account_id=account_id, kind="statement", format=info.format,
                    file_name=file_name[:255], file_sha256=file_sha256, file_size=file_size,
                    actor=actor, imported_at=now_utc(),
                    account_in_file=(mask(info.account_number)[:40] if info.account_number
                                     else None),
                    period_start=start, period_end=end, opening_balance=info.opening_balance,
                    closing_balance=info.closing_balance, credits_total=prepared.credits,
                    debits_total=prepared.debits, lines_total=prepared.rows, lines_new=0,
                    lines_duplicate=prepared.rows)
                s.add(row)
                s.flush()
                import_id = row.id
                new = staging.store(conn, account_id, import_id)
                s.execute(update(StatementImportRow).where(StatementImportRow.id == import_id)
                          .values(lines_new=new, lines_duplicate=prepared.rows - new))
                self.fp.audit.append(s, actor=actor, action="statements.import",
                                     object_type="statement_import", object_id=import_id,
                                     details={"file": file_name, "sha256": file_sha256,
                                              "format": info.format, "account": account_id,
                                              "lines": prepared.rows, "new": new})
                s.flush()
            trans.commit()
        except BaseException:
            trans.rollback()
            raise
        stored = time.perf_counter() - started
        log.info("imported %s into account %s: %d lines, %d new (read and checked in %.2f s, "
                 "stored in %.2f s)", file_name, account_id, prepared.rows, new,
                 prepared.read_seconds, stored)
        return ImportResult(
            import_id=import_id, kind="statement", format=info.format, file_name=file_name,
            account_id=account_id, lines=prepared.rows, new=new,
            duplicates=prepared.rows - new, period_start=start, period_end=end,
            opening_balance=info.opening_balance, closing_balance=info.closing_balance,
            credits=prepared.credits, debits=prepared.debits,
            seconds_read=round(prepared.read_seconds, 3), seconds_store=round(stored, 3))

    # settlement files -----------------------------------------------------------------------
    def import_settlement(self, sf: SettlementFile, account_id: int, *, file_name: str,
                          file_sha256: str, file_size: int, actor: str = "system",
                          replace_reason: str | None = None) -> ImportResult:
        """Store a gateway settlement file's batches and transactions (idempotent).

        A batch already stored with a different total or day, or to which the file adds
        transactions, is refused (Conflict): the provider re-issued it and a person must
        look. Once a person has the gateway's corrected file, ``replace_reason`` (with the
        ``actor``) replaces each stored batch the file changes, in the same transaction: the
        old batch and its transactions go into one ``statements.replace_batch`` audit entry
        each (nothing is lost), and the batch then points at this import, so the scheduler
        reconciles its days again. A batch is never moved into another account.

        Raises:
            Conflict: a batch differs (without ``replace_reason``), or cannot be replaced.
            ValidationError: the file is for another account; a blank reason or actor.
        """
        replacing = _Replacing.make(replace_reason, actor, file_name, file_sha256)
        expected = self._expected(account_id)
        txns = [t for b in sf.batches for t in b.transactions]
        for b in sf.batches:
            _check_no_nul(sf.source, None, batch_id=b.batch_id, account_number=b.account_number)
        for t in txns:
            _check_no_nul(sf.source, t.line_no, provider_txn_id=t.provider_txn_id,
                        batch_id=t.batch_id, reference=t.reference)
        _check_no_nul(sf.source, None, account_number=sf.account_number)
        for number in {sf.account_number, *(b.account_number for b in sf.batches)} - {None}:
            self._check_account(sf.source, account_id, expected, number, None)
        with self.fp.db.session() as s:
            row = StatementImportRow(
                account_id=account_id, kind="settlement", format=sf.format,
                file_name=file_name[:255], file_sha256=file_sha256, file_size=file_size,
                actor=actor, imported_at=now_utc(),
                account_in_file=mask(sf.account_number) if sf.account_number else None,
                period_start=min((b.settled_on for b in sf.batches), default=None),
                period_end=max((b.settled_on for b in sf.batches), default=None),
                credits_total=sum(b.net_total for b in sf.batches), debits_total=0,
                lines_total=len(txns), lines_new=0, lines_duplicate=len(txns))
            s.add(row)
            s.flush()
            new = sum(self._store_batch(s, batch, account_id, row.id, replacing)
                      for batch in sf.batches)
            days = [d for d in (row.period_start, row.period_end,
                                *(replacing.old_days if replacing else ())) if d]
            start, end = min(days, default=None), max(days, default=None)
            s.execute(update(StatementImportRow).where(StatementImportRow.id == row.id)
                      .values(lines_new=new, lines_duplicate=len(txns) - new,
                              period_start=start, period_end=end))
            details: dict[str, object] = {
                "file": file_name, "sha256": file_sha256, "format": sf.format,
                "account": account_id, "batches": len(sf.batches), "transactions": len(txns),
                "new": new}
            if replacing:
                details["replaced_batches"] = replacing.replaced
            self.fp.audit.append(s, actor=actor, action="statements.import_settlement",
                                 object_type="statement_import", object_id=row.id,
                                 reason=replacing.reason if replacing else None,
                                 details=details)
            return ImportResult(
                import_id=row.id, kind="settlement", format=sf.format, file_name=file_name,
                account_id=account_id, lines=len(txns), new=new, duplicates=len(txns) - new,
                period_start=start, period_end=end,
                credits=row.credits_total, batches=len(sf.batches),
                replaced_batches=list(replacing.replaced) if replacing else [])

    def _store_batch(self, s: Session, batch: SettlementBatch, account_id: int,
                     import_id: int, replacing: _Replacing | None) -> int:
        """Store one batch of the file; return how many of its transactions are new.

        A new batch is inserted. A stored one is left as it is when the file says the
        same, replaced when ``replacing`` and the file differs, refused otherwise."""
        _check_batch_id_free(s, batch)
        values = _batch_values(batch, account_id, import_id)
        try:
            pk = s.scalar(_dialect_insert(s)(SettlementBatchRow).values(**values)
                          .on_conflict_do_nothing(index_elements=["provider", "batch_id"])
                          .returning(SettlementBatchRow.id))
        except IntegrityError as exc:  # another provider's batch, stored meanwhile
            if "batch_id" not in str(exc.orig):  # any other constraint: not this refusal
                raise
            raise _batch_id_taken(batch, None) from exc
        if pk is not None:
            return _insert_txns(s, batch, pk, import_id)
        old = s.scalars(select(SettlementBatchRow).where(
            SettlementBatchRow.provider == batch.provider,
            SettlementBatchRow.batch_id == batch.batch_id)).one()
        if replacing is not None:
            return self._replace_batch(s, old, batch, values, replacing)
        if (old.net_total, old.settled_on, old.account_id) != (
                batch.net_total, batch.settled_on, account_id):
            hint = (_HOW_TO_REPLACE if old.account_id == account_id
                    else "A batch never moves into another account")
            raise Conflict(
                f"{batch.provider} batch {batch.batch_id} was already imported with net "
                f"{format_vnd(old.net_total)} on {old.settled_on:%d/%m/%Y} into account "
                f"{old.account_id}; this file says {format_vnd(batch.net_total)} on "
                f"{batch.settled_on:%d/%m/%Y} into account {account_id}. {hint}",
                field="batch_id")
        new = _insert_txns(s, batch, old.id, import_id)
        if new:
            raise Conflict(
                f"{batch.provider} batch {batch.batch_id} was already imported; this file adds "
                f"{new} transaction(s) to it. A paid-out batch does not change: ask the "
                f"provider which file is right. {_HOW_TO_REPLACE}", field="batch_id")
        return new

    def _replace_batch(self, s: Session, old: SettlementBatchRow, batch: SettlementBatch,
                       values: dict, replacing: _Replacing) -> int:
        """Replace a stored batch by the file's version when they differ; audit the old one.

        The old row values and transactions go into the audit entry before the old
        transactions are deleted, so a replacement loses nothing."""
        _check_same_account(old, batch, values["account_id"])
        X = SettlementTxnRow
        old_txns = s.execute(select(
            X.id, X.import_id, X.line_no, X.provider_txn_id, X.kind, X.order_ref, X.reference,
            X.gross, X.fee, X.net, X.paid_at).where(X.batch_pk == old.id)
            .order_by(X.line_no, X.id)).all()
        if _same_batch(old, old_txns, batch):
            return 0
        if old.import_id == values["import_id"]:
            raise Conflict(f"{batch.provider} batch {batch.batch_id} appears twice in this "
                           "file, with different contents; nothing was imported",
                           field="batch_id")
        before = _batch_snapshot(old, old_txns)
        replacing.old_days.append(old.settled_on)
        s.execute(delete(X).where(X.batch_pk == old.id)
                  .execution_options(synchronize_session=False))
        s.execute(update(SettlementBatchRow).where(SettlementBatchRow.id == old.id)
                  .values(**{k: values[k] for k in _REPLACED_COLUMNS})
                  .execution_options(synchronize_session=False))
        new = _insert_txns(s, batch, old.id, values["import_id"])
        if new != len(batch.transactions):
            raise Conflict(
                f"{batch.provider} batch {batch.batch_id}: {len(batch.transactions) - new} "
                "transaction(s) of the corrected file are stored in another batch (or listed "
                "twice); nothing was imported", field="batch_id")
        self.fp.audit.append(
            s, actor=replacing.actor, action="statements.replace_batch",
            object_type="settlement_batch", object_id=old.id, reason=replacing.reason,
            details={"provider": batch.provider, "batch_id": batch.batch_id,
                     "account": old.account_id, "file": replacing.file_name,
                     "sha256": replacing.file_sha256, "old": before,
                     "new": {k: values[k] for k in _REPLACED_COLUMNS}})
        replacing.replaced.append(batch.batch_id)
        return new

    # reading -------------------------------------------------------------------------------
    def list_imports(self, account_id: int | None = None, limit: int = 100) -> list[dict]:
        """The most recent imports first (file, hash, who/when, counts)."""
        q = select(StatementImportRow).order_by(StatementImportRow.id.desc()).limit(limit)
        if account_id is not None:
            q = q.where(StatementImportRow.account_id == account_id)
        with self.fp.db.session() as s:
            return [{c: getattr(r, c) for c in (
                "id", "account_id", "kind", "format", "file_name", "file_sha256", "file_size",
                "actor", "imported_at", "account_in_file", "period_start", "period_end",
                "opening_balance", "closing_balance", "credits_total", "debits_total",
                "lines_total", "lines_new", "lines_duplicate")} for r in s.scalars(q)]

    def lines(self, account_id: int, start: date | None = None,
              end: date | None = None) -> list[dict]:
        """Stored lines of an account, optionally for posting days in [start, end]."""
        q = select(StatementLineRow).where(StatementLineRow.account_id == account_id)
        if start is not None:
            q = q.where(StatementLineRow.posting_date >= start)
        if end is not None:
            q = q.where(StatementLineRow.posting_date <= end)
        q = q.order_by(StatementLineRow.posting_date, StatementLineRow.id)
        with self.fp.db.session() as s:
            return [{c.name: getattr(r, c.name) for c in StatementLineRow.__table__.columns}
                    for r in s.scalars(q)]

    def count_lines(self, account_id: int | None = None) -> int:
        q = select(func.count()).select_from(StatementLineRow)
        if account_id is not None:
            q = q.where(StatementLineRow.account_id == account_id)
        with self.fp.db.session() as s:
            return int(s.scalar(q) or 0)
