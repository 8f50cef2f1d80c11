"""Declarative Excel/CSV layouts: a bank's statement export or a gateway's settlement file.

A layout is a short TOML file (``profiles/*.toml``; users add their own, see
:mod:`adapters.statements.registry`). It names the columns by their header labels, in
Vietnamese and English, and the labels of the facts printed around the table::

    name = "vietcombank"                    # what --format selects
    kind = "statement"                      # or "settlement"
    title = "Vietcombank — sao kê tài khoản"
    bank_bin = "970436"                     # refuse the file for an account at another bank
    markers = ["Ngân hàng TMCP Ngoại thương", "Vietcombank"]  # one must be above the table
    footer = ["Tổng cộng", "Total"]         # a row starting with one of these ends the table

    [columns]                               # field = [header labels]; all required except
    posting_date = ["Ngày giao dịch", "Transaction date"]   # those listed in `optional`
    bank_ref = ["Số tham chiếu", "Reference No"]
    debit = ["Số tiền ghi nợ", "Debit"]      # or: amount (signed) [+ direction]
    credit = ["Số tiền ghi có", "Credit"]
    memo = ["Nội dung", "Description"]

    [meta]                                  # facts in the title block or footer
    account_number = ["Số tài khoản", "Account number"]
    opening_balance = ["Số dư đầu kỳ", "Opening balance"]
    closing_balance = ["Số dư cuối kỳ", "Closing balance"]

How a file is read:

1. **Header row.** In each sheet (or the CSV), the first 80 rows are searched for a row in
   which every required column has a cell answering to one of its labels. A cell answers
   to a label when, ignoring case, diacritics and punctuation, the label equals the whole
   cell or one part of it split at ``/``, a line break or brackets — so the bilingual
   ``Số tiền ghi có/ Credit`` answers to both ``Số tiền ghi có`` and ``Credit``. A second
   header row right below (English under Vietnamese) is skipped.
2. **Identify.** The rows above the header (the title block) and the sheet name must
   contain one of the ``markers``; that is what tells two banks with similar columns apart.
3. **Facts.** A cell starting with a ``[meta]`` label gives its value after a ``:`` in the
   same cell, or in the next non-empty cell of the row. Balances may also sit in rows
   inside the table (``Số dư đầu kỳ`` as the first row) or in the footer.
4. **Rows.** Every row below the header is a transaction until a footer row; blank rows
   are skipped. Anything else that does not parse is an error naming the row and column.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from adapters.statements.base import Adapter
from adapters.statements.cells import (
    fast_dmy,
    find_dates,
    fold,
    is_blank,
    label_parts,
    nearest_second,
    read_amount,
    read_date_time,
    to_text,
    vnd_text,
)
from adapters.statements.source import Source, Table
from feepay.exceptions import ConfigurationError, ParseError
from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.statements import CREDIT, DEBIT, VN_FIXED, Line, StatementInfo, StatementStream

STATEMENT_FIELDS = ("posting_date", "value_at", "debit", "credit", "amount", "direction",
                    "bank_ref", "memo", "counterparty_name", "counterparty_account", "balance")
SETTLEMENT_FIELDS = ("provider_txn_id", "reference", "paid_at", "kind", "gross", "fee", "net",
                     "settled_on", "batch_id", "account_number")
META_FIELDS = ("account_number", "currency", "period", "period_start", "period_end",
               "opening_balance", "closing_balance", "settled_on", "batch_id", "total_net")
TOP_KEYS = {"name", "kind", "title", "bank_bin", "provider", "markers", "footer", "sheets",
            "delimiter", "columns", "optional", "meta", "direction", "kinds", "provenance",
            "batch_id_template", "fill_down_date"}
DEFAULT_FOOTER = ("Tổng cộng", "Cộng phát sinh", "Cộng doanh số", "Tổng số", "Total")
DEFAULT_CREDIT = ("C", "CR", "Có", "Ghi có", "Credit", "+")
DEFAULT_DEBIT = ("D", "DR", "Nợ", "Ghi nợ", "Debit", "-")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")
_ACCOUNT = re.compile(r"\d[\d\s.*xX•\-]{4,}\d")
_CURRENCY = re.compile(r"\b(VND|VNĐ|USD|EUR|JPY|CNY)\b", re.IGNORECASE)
_CURRENCY_SUFFIX = re.compile(r"\s*(VND|VNĐ|đ|₫)\s*$", re.IGNORECASE)
_AMOUNT_TEXT = re.compile(r"^[-(]?\s*\d[\d.,\s]*\)?$")


def _amount_like(cell: Any) -> bool:
    """A cell that can hold a balance: a number, or digits with separators (not a date)."""
    if isinstance(cell, bool | date):
        return False
    if isinstance(cell, int | float):
        return True
    text = _CURRENCY_SUFFIX.sub("", to_text(cell).strip())
    return bool(_AMOUNT_TEXT.match(text)) and not find_dates(text)


# -- the declarative profile -----------------------------------------------------------------
@dataclass
class Profile:
    """A parsed, checked TOML layout. See the module docstring for the keys."""

    name: str
    kind: str
    title: str
    columns: dict[str, tuple[str, ...]]
    optional: frozenset[str] = frozenset()
    meta: dict[str, tuple[str, ...]] = field(default_factory=dict)
    markers: tuple[str, ...] = ()
    footer: tuple[str, ...] = DEFAULT_FOOTER
    sheets: tuple[str, ...] = ()
    delimiter: str | None = None
    bank_bin: str | None = None
    provider: str | None = None
    credit_values: frozenset[str] = frozenset(fold(v) for v in DEFAULT_CREDIT)
    debit_values: frozenset[str] = frozenset(fold(v) for v in DEFAULT_DEBIT)
    refund_values: frozenset[str] = frozenset()
    batch_id_template: str = "{provider}-{settled_on:%Y%m%d}"
    fill_down_date: bool = False  # rows without a date take the date of the row above
    provenance: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"statement profile {path}: {exc}") from None
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "<dict>") -> Profile:
        def bad(msg: str) -> ConfigurationError:
            return ConfigurationError(f"statement profile {origin}: {msg}")

        unknown = set(data) - TOP_KEYS
        if unknown:
            raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
        name = str(data.get("name", ""))
        if not _NAME.match(name):
            raise bad("`name` must be lower-case letters, digits, '.', '_' or '-'")
        kind = data.get("kind", "statement")
        if kind not in ("statement", "settlement"):
            raise bad("`kind` is 'statement' or 'settlement'")
        allowed = STATEMENT_FIELDS if kind == "statement" else SETTLEMENT_FIELDS
        columns = {k: _labels(v, bad, f"columns.{k}") for k, v in
                   dict(data.get("columns", {})).items()}
        if set(columns) - set(allowed):
            raise bad(f"unknown column field(s) {sorted(set(columns) - set(allowed))}; "
                      f"allowed: {', '.join(allowed)}")
        meta = {k: _labels(v, bad, f"meta.{k}") for k, v in dict(data.get("meta", {})).items()}
        if set(meta) - set(META_FIELDS):
            raise bad(f"unknown meta field(s) {sorted(set(meta) - set(META_FIELDS))}")
        optional = frozenset(data.get("optional", ()))
        if optional - set(columns):
            extra = sorted(optional - set(columns))
            raise bad(f"`optional` names columns not in [columns]: {extra}")
        _check_required(kind, columns, meta, bad)
        direction = dict(data.get("direction", {}))
        kinds = dict(data.get("kinds", {}))
        profile = cls(
            name=name, kind=kind, title=str(data.get("title", name)), columns=columns,
            optional=optional, meta=meta,
            markers=_labels(data.get("markers", []), bad, "markers", empty_ok=True),
            footer=_labels(data.get("footer", list(DEFAULT_FOOTER)), bad, "footer",
                           empty_ok=True),
            sheets=tuple(str(s) for s in data.get("sheets", ())),
            delimiter=(data.get("delimiter") or None), bank_bin=data.get("bank_bin"),
            provider=data.get("provider"), provenance=dict(data.get("provenance", {})),
            batch_id_template=str(data.get("batch_id_template",
                                           "{provider}-{settled_on:%Y%m%d}")),
            fill_down_date=bool(data.get("fill_down_date", False)), origin=origin)
        if direction:
            profile.credit_values = frozenset(fold(v) for v in direction.get("credit", ()))
            profile.debit_values = frozenset(fold(v) for v in direction.get("debit", ()))
        if kinds:
            profile.refund_values = frozenset(fold(v) for v in kinds.get("refund", ()))
        if kind == "settlement" and not profile.provider:
            raise bad("a settlement layout needs `provider` (e.g. 'vnpay')")
        return profile

    def required(self) -> list[str]:
        return [f for f in self.columns if f not in self.optional]


def _labels(value: Any, bad: Any, key: str, empty_ok: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise bad(f"`{key}` must be a list of strings")
    if not value and not empty_ok:
        raise bad(f"`{key}` needs at least one label")
    return tuple(value)


def _check_required(kind: str, columns: dict, meta: dict, bad: Any) -> None:
    if kind == "statement":
        for need in ("posting_date", "memo"):
            if need not in columns:
                raise bad(f"[columns] needs `{need}`")
        if not ({"debit", "credit"} <= set(columns) or "amount" in columns):
            raise bad("[columns] needs `debit` and `credit`, or a signed `amount`")
    else:
        for need in ("provider_txn_id", "gross"):
            if need not in columns:
                raise bad(f"[columns] needs `{need}`")
        if "fee" not in columns and "net" not in columns:
            raise bad("[columns] needs `fee` or `net`")
        if "settled_on" not in columns and "settled_on" not in meta:
            raise bad("the settlement day needs a `settled_on` column or [meta] label")


# -- locating the table ----------------------------------------------------------------------
@dataclass
class Layout:
    """Where a profile's table sits in one sheet: header row and column positions."""

    table: Table
    header_row: int  # 1-based
    index: dict[str, int]
    header: dict[str, str]  # field -> the header text as printed (for error messages)
    skip_to: int  # last header row (a second, English header row is skipped)


@dataclass
class Miss:
    """Why a profile did not find its table: for the error message."""

    sheet: str | None
    row: int | None
    found: list[str]
    missing: list[str]


def _match_row(profile: Profile, row: list[Any]) -> tuple[dict[str, int], dict[str, str]]:
    """Map fields to cells; a field's earlier labels win, a cell serves one field."""
    cells = {j: label_parts(c) for j, c in enumerate(row)
             if isinstance(c, str) and c.strip()}
    index: dict[str, int] = {}
    header: dict[str, str] = {}
    for f, aliases in profile.columns.items():
        for alias in aliases:
            key = fold(alias)
            j = next((j for j, parts in cells.items()
                      if key in parts and j not in index.values()), None)
            if j is not None:
                index[f] = j
                header[f] = " ".join(str(row[j]).split())
                break
    return index, header


def locate(profile: Profile, tables: list[Table]) -> tuple[Layout | None, Miss | None]:
    """The first sheet/row holding the profile's header; else the closest miss."""
    best: Miss | None = None
    required = profile.required()
    all_aliases = {fold(a) for aliases in profile.columns.values() for a in aliases}
    for table in tables:
        if profile.sheets and table.sheet is not None and not any(
                fnmatch.fnmatch(table.sheet.lower(), pat.lower()) for pat in profile.sheets):
            continue
        for i, row in enumerate(table.rows):
            index, header = _match_row(profile, row)
            missing = [f for f in required if f not in index]
            if not missing:
                skip = i + 1
                while skip < len(table.rows) and _is_header_like(table.rows[skip], all_aliases,
                                                                 index.get("posting_date")):
                    skip += 1
                return Layout(table, i + 1, index, header, skip), None
            if index and (best is None or len(index) > len(best.found)):
                best = Miss(table.sheet, i + 1, sorted(index), missing)
    if best is None:
        best = Miss(None, None, [], required)
    return None, best


def _is_header_like(row: list[Any], aliases: set[str], date_col: int | None) -> bool:
    hits = sum(1 for c in row if isinstance(c, str) and c.strip() and label_parts(c) & aliases)
    if hits < 2:
        return False
    if date_col is not None and date_col < len(row):
        cell = row[date_col]
        if not isinstance(cell, str) or re.search(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}", cell):
            return False
    return True


def title_text(layout: Layout) -> str:
    """Folded text of the sheet name and every cell above the header row."""
    cells = [layout.table.sheet or ""]
    for row in layout.table.rows[:layout.header_row - 1]:
        cells.extend(to_text(c) for c in row if not is_blank(c))
    return " " + fold(" ".join(cells)) + " "


def has_marker(profile: Profile, layout: Layout) -> bool:
    if not profile.markers:
        return True
    text = title_text(layout)
    return any(f" {fold(m)} " in text for m in profile.markers)


# -- facts around the table -------------------------------------------------------------------
class MetaReader:
    """Reads ``[meta]`` facts from title, in-table and footer rows into a dict."""

    def __init__(self, profile: Profile, source: str) -> None:
        self.profile = profile
        self.source = source
        self.labels = {f: tuple(fold(a) for a in aliases) for f, aliases in profile.meta.items()}
        self.values: dict[str, Any] = {}

    def row_has_label(self, row: list[Any]) -> bool:
        for cell in row:
            if isinstance(cell, str) and cell.strip():
                text = fold(cell)
                if any(text.startswith(a) for labels in self.labels.values() for a in labels):
                    return True
        return False

    def scan(self, row: list[Any], row_no: int) -> None:
        for j, cell in enumerate(row):
            if not isinstance(cell, str) or not cell.strip():
                continue
            text = fold(cell)
            for f, labels in self.labels.items():
                if f in self.values or not any(text.startswith(a) for a in labels):
                    continue
                value = self._value(f, row, j, row_no)
                if value is not None:
                    self.values[f] = value
                break

    def _value(self, f: str, row: list[Any], j: int, row_no: int) -> Any:
        cell = row[j]
        same = cell.split(":", 1)[1].strip() if ":" in cell else ""
        rest = [c for c in row[j + 1:] if not is_blank(c)]
        label = " ".join(cell.split(":", 1)[0].split())
        if f in ("period", "period_start", "period_end", "settled_on"):
            days = find_dates(" ".join([cell, *(to_text(c) for c in rest)]))
            days += [c for c in rest if isinstance(c, date)]
            return days or None
        if f in ("opening_balance", "closing_balance", "total_net"):
            raw = next((c for c in ([same] if same else []) + rest if _amount_like(c)), None)
            if raw is None:
                return None
            if isinstance(raw, str):
                raw = _CURRENCY_SUFFIX.sub("", raw.strip())
            return read_amount(raw, source=self.source, row=row_no, column=label, signed=True)
        text = same if same else (to_text(rest[0]) if rest else "")
        if f == "account_number":
            match = _ACCOUNT.search(text)
            return match.group(0) if match else None
        if f == "currency":
            match = _CURRENCY.search(text)
            return match.group(1).upper().replace("VNĐ", "VND") if match else None
        return text.strip() or None

    def apply(self, info: StatementInfo) -> None:
        v = self.values
        if "account_number" in v and info.account_number is None:
            info.account_number = v["account_number"]
        if "currency" in v:
            info.currency = v["currency"]
        if "opening_balance" in v:
            info.opening_balance = v["opening_balance"]
        if "closing_balance" in v:
            info.closing_balance = v["closing_balance"]
        if "period" in v:
            info.period_start, info.period_end = v["period"][0], v["period"][-1]
        if "period_start" in v:
            info.period_start = v["period_start"][0]
        if "period_end" in v:
            info.period_end = v["period_end"][-1]


# -- reading rows -------------------------------------------------------------------------------
class TableAdapter(Adapter):
    """Shared machinery of statement profiles and settlement layouts."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.name = profile.name
        self.kind = profile.kind
        self.title = profile.title

    def identify(self, source: Source) -> bool:
        if source.kind not in ("xlsx", "xls", "text"):
            return False
        if source.kind == "text" and _looks_structured(source):
            return False
        layout, _ = locate(self.profile, source.tables())
        return layout is not None and has_marker(self.profile, layout)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out.update(bank_bin=self.profile.bank_bin, provider=self.profile.provider,
                   origin=self.profile.origin)
        return out

    def _layout(self, source: Source) -> Layout:
        source.require("xlsx", "xls", "text", what=f"a {self.title} export")
        if source.kind == "text" and _looks_structured(source):
            raise ParseError(f"the file is MT940 or XML, not a {self.title} export",
                             source=source.name)
        tables = source.tables()
        layout, miss = locate(self.profile, tables)
        if layout is None:
            raise ParseError(_miss_message(self.profile, miss, tables), source=source.name,
                             line=miss.row if miss else None)
        return layout

    def _rows(self, source: Source, layout: Layout) -> Iterator[tuple[int, list[Any]]]:
        if source.is_spreadsheet:
            rows = source.iter_sheet(layout.table.sheet or "")
        else:
            rows = source.iter_csv(self.profile.delimiter)
        yield from enumerate(rows, start=1)

    def _title_meta(self, source: Source, layout: Layout) -> MetaReader:
        meta = MetaReader(self.profile, source.name)
        for i, row in enumerate(layout.table.rows[:layout.header_row - 1], start=1):
            meta.scan(row, i)
        return meta

    def _footer_start(self, row: list[Any]) -> bool:
        for cell in row:
            if not is_blank(cell):
                text = fold(to_text(cell))
                return any(text.startswith(fold(m)) for m in self.profile.footer)
        return False


def _looks_structured(source: Source) -> bool:
    """MT940 and XML text must not be mistaken for a CSV export."""
    head = source.head_text().lstrip("\ufeff \r\n\t")[:2000]
    return head.startswith(("<", "{1:")) or bool(re.search(r"^:20:", head, re.MULTILINE))


def _miss_message(profile: Profile, miss: Miss | None, tables: list[Table]) -> str:
    labels = {f: profile.columns[f][0] for f in profile.columns}
    names = ", ".join(f"'{t.sheet}'" for t in tables if t.sheet is not None)
    if profile.sheets and names and not any(
            fnmatch.fnmatch((t.sheet or "").lower(), pat.lower())
            for t in tables for pat in profile.sheets):
        wanted = ", ".join(f"'{p}'" for p in profile.sheets)
        return f"wrong sheet: no sheet named like {wanted} (the workbook has {names})"
    where = ""
    if tables and tables[0].sheet is not None:
        names = ", ".join(f"'{t.sheet}'" for t in tables)
        where = f" in sheet(s) {names}"
    if miss is None or not miss.found:
        need = ", ".join(f"'{labels[f]}'" for f in profile.required())
        return f"no header row with the columns {need} was found{where}"
    missing = ", ".join(f"'{labels[f]}' ({' / '.join(profile.columns[f])})"
                        for f in miss.missing)
    sheet = f" of sheet '{miss.sheet}'" if miss.sheet else ""
    return f"missing column {missing} in the header row{sheet}"


class StatementProfile(TableAdapter):
    """A bank's Excel/CSV statement export, described by a :class:`Profile`."""

    def read(self, source: Source) -> StatementStream:
        layout = self._layout(source)
        info = StatementInfo(source=source.name, format=self.name,
                             bank_bin=self.profile.bank_bin)
        meta = self._title_meta(source, layout)
        meta.apply(info)
        return StatementStream(info, self._lines(source, layout, meta, info))

    def _lines(self, source: Source, layout: Layout, meta: MetaReader,
               info: StatementInfo) -> Iterator[Line]:
        """Every transaction row as a Line (the hot loop of a million-line import)."""
        p, name, ix, hd = self.profile, source.name, layout.index, layout.header
        i_date = ix["posting_date"]
        i_value = ix.get("value_at")
        i_debit, i_credit, i_amount = ix.get("debit"), ix.get("credit"), ix.get("amount")
        i_ref, i_memo = ix.get("bank_ref"), ix["memo"]
        i_cpn, i_cpa = ix.get("counterparty_name"), ix.get("counterparty_account")
        width = max(ix.values()) + 1
        new_line = tuple.__new__
        footer = False
        last_day: date | None = None
        rows = itertools.islice(self._rows(source, layout), layout.skip_to, None)
        for row_no, row in rows:
            if len(row) < width:
                row = list(row) + [None] * (width - len(row))
            if footer:
                meta.scan(row, row_no)
                continue
            cell = row[i_date]
            parsed = None
            if cell.__class__ is str and len(cell) >= 10 and cell[2] == "/" and cell[5] == "/":
                parsed = fast_dmy(cell)  # dd/mm/yyyy[ HH:MM[:SS]], the usual case
            elif cell.__class__ is datetime:  # an Excel date cell (python-calamine)
                if cell.microsecond:
                    cell = nearest_second(cell)
                parsed = (cell.date(), cell.replace(tzinfo=VN_FIXED)
                          if cell.hour or cell.minute or cell.second else None)
            if parsed is None:
                if is_blank(cell) or (isinstance(cell, str)
                                      and not cell.lstrip()[:1].isdigit()):
                    if all(is_blank(c) for c in row):
                        continue
                    if self._footer_start(row):
                        footer = True
                        meta.scan(row, row_no)
                        continue
                    if meta.row_has_label(row):
                        meta.scan(row, row_no)
                        continue
                    if p.fill_down_date and is_blank(cell) and last_day is not None:
                        cell = last_day
                try:
                    parsed = read_date_time(cell, source=name, row=row_no,
                                            column=hd["posting_date"])
                except ParseError:
                    if self._footer_start(row):  # a totals row with digits in the date column
                        footer = True
                        meta.scan(row, row_no)
                        continue
                    if meta.row_has_label(row):
                        meta.scan(row, row_no)
                        continue
                    raise
            day, moment = parsed
            last_day = day
            if i_value is not None and not is_blank(row[i_value]):
                _, moment = read_date_time(row[i_value], source=name, row=row_no,
                                           column=hd["value_at"])
            if i_amount is None:
                amount, direction = self._debit_credit(row[i_debit], row[i_credit], name,
                                                       row_no, hd)
            else:
                amount, direction = self._signed(row, row_no, name, ix, hd)
            ref = row[i_ref] if i_ref is not None else None
            if ref is not None:
                ref = (ref.strip() if ref.__class__ is str else to_text(ref).strip()) or None
            memo = row[i_memo]
            if memo.__class__ is not str:
                memo = to_text(memo)
            cpn = to_text(row[i_cpn]).strip() or None if i_cpn is not None else None
            cpa = to_text(row[i_cpa]).strip() or None if i_cpa is not None else None
            yield new_line(Line, (row_no, day, amount, direction, moment, ref, memo, cpn, cpa))
        meta.apply(info)

    @staticmethod
    def _debit_credit(debit: Any, credit: Any, name: str, row_no: int,
                      hd: dict[str, str]) -> tuple[int, str]:
        if credit.__class__ is str and credit[:1].isdigit():
            value = vnd_text(credit.strip(), name, row_no, hd["credit"])
            if value and not is_blank(debit) and read_amount(
                    debit, source=name, row=row_no, column=hd["debit"]):
                raise ParseError("both debit and credit hold an amount", source=name,
                                 line=row_no, column=hd["credit"])
            if value:
                return value, CREDIT
        d = read_amount(debit, source=name, row=row_no, column=hd["debit"])
        c = read_amount(credit, source=name, row=row_no, column=hd["credit"])
        if d and c:
            raise ParseError("both debit and credit hold an amount", source=name, line=row_no,
                             column=hd["credit"])
        if c:
            return c, CREDIT
        if d:
            return d, DEBIT
        raise ParseError("neither debit nor credit holds an amount", source=name, line=row_no,
                         column=hd["credit"])

    def _signed(self, row: list[Any], row_no: int, name: str, ix: dict[str, int],
                hd: dict[str, str]) -> tuple[int, str]:
        p = self.profile
        signed = read_amount(row[ix["amount"]], source=name, row=row_no, column=hd["amount"],
                             signed=True)
        if not signed:
            raise ParseError("no amount", source=name, line=row_no, column=hd["amount"])
        amount, direction = abs(signed), CREDIT if signed > 0 else DEBIT
        if "direction" in ix:
            mark = fold(to_text(row[ix["direction"]]))
            if mark in p.credit_values:
                direction = CREDIT
            elif mark in p.debit_values:
                direction = DEBIT
            else:
                raise ParseError(f"'{to_text(row[ix['direction']])}' is neither credit nor "
                                 "debit", source=name, line=row_no, column=hd["direction"])
        return amount, direction


class SettlementLayout(TableAdapter):
    """A gateway settlement file (one row per transaction), described by a :class:`Profile`."""

    def read_settlement(self, source: Source) -> SettlementFile:
        layout = self._layout(source)
        meta = self._title_meta(source, layout)
        p, name, ix, hd = self.profile, source.name, layout.index, layout.header
        width = max(ix.values()) + 1
        txns: list[tuple[SettlementTxn, date, str | None]] = []
        seen: dict[tuple[str, str], int] = {}
        footer = False
        for row_no, row in self._rows(source, layout):
            if row_no <= layout.skip_to:
                continue
            if len(row) < width:
                row = list(row) + [None] * (width - len(row))
            if footer or all(is_blank(c) for c in row):
                if footer:
                    meta.scan(row, row_no)
                continue
            if self._footer_start(row):
                footer = True
                meta.scan(row, row_no)
                continue
            txn_id = to_text(row[ix["provider_txn_id"]]).strip()
            if not txn_id:
                if meta.row_has_label(row):
                    meta.scan(row, row_no)
                    continue
                raise ParseError("the gateway transaction id is empty", source=name,
                                 line=row_no, column=hd["provider_txn_id"])
            txns.append(self._txn(row, row_no, name, ix, hd, meta, seen, txn_id))
        if not txns:
            raise ParseError("the file holds no transactions", source=name)
        batches = self._batches(txns, name)
        total = meta.values.get("total_net")
        if total is not None and total != sum(b.net_total for b in batches):
            got = sum(b.net_total for b in batches)
            raise ParseError(f"the file's total {total} differs from the sum of the rows {got}"
                             f" (difference {total - got})", source=name, column="total_net")
        return SettlementFile(source=name, format=p.name, batches=tuple(batches),
                              account_number=meta.values.get("account_number"))

    def _txn(self, row: list[Any], row_no: int, name: str, ix: dict[str, int],
             hd: dict[str, str], meta: MetaReader, seen: dict[tuple[str, str], int],
             txn_id: str) -> tuple[SettlementTxn, date, str | None]:
        p = self.profile

        def amount(f: str) -> int | None:
            if f not in ix:
                return None
            return read_amount(row[ix[f]], source=name, row=row_no, column=hd[f], signed=True)

        kind = "payment"
        if "kind" in ix and fold(to_text(row[ix["kind"]])) in p.refund_values:
            kind = "refund"
        if (txn_id, kind) in seen:
            raise ParseError(f"transaction {txn_id} appears twice (rows {seen[txn_id, kind]} "
                             f"and {row_no})", source=name, line=row_no,
                             column=hd["provider_txn_id"])
        seen[txn_id, kind] = row_no
        gross, fee, net = amount("gross"), amount("fee"), amount("net")
        if gross is None:
            raise ParseError("the amount is empty", source=name, line=row_no,
                             column=hd["gross"])
        if fee is None and net is None:
            raise ParseError("neither fee nor net is given", source=name, line=row_no,
                             column=hd.get("fee") or hd.get("net"))
        if fee is None:
            fee = gross - net
        if net is None:
            net = gross - fee
        if gross - fee != net:
            raise ParseError(f"gross {gross} − fee {fee} = {gross - fee}, not the net {net}",
                             source=name, line=row_no, column=hd.get("net"))
        if kind == "refund":
            gross, fee, net = -abs(gross), -abs(fee), -abs(net)
        paid_at = None
        if "paid_at" in ix and not is_blank(row[ix["paid_at"]]):
            _, paid_at = read_date_time(row[ix["paid_at"]], source=name, row=row_no,
                                        column=hd["paid_at"])
        if "settled_on" in ix:
            settled_on, _ = read_date_time(row[ix["settled_on"]], source=name, row=row_no,
                                           column=hd["settled_on"])
        elif "settled_on" in meta.values:
            settled_on = meta.values["settled_on"][0]
        else:
            raise ParseError("the settlement day is not stated", source=name, line=row_no)
        batch = to_text(row[ix["batch_id"]]).strip() if "batch_id" in ix else ""
        if not batch:
            batch = str(meta.values.get("batch_id") or "") or self.profile.batch_id_template.format(
                provider=p.provider, settled_on=settled_on)
        ref = to_text(row[ix["reference"]]).strip() if "reference" in ix else ""
        account = to_text(row[ix["account_number"]]).strip() if "account_number" in ix else ""
        txn = SettlementTxn(line_no=row_no, provider_txn_id=txn_id, reference=ref or None,
                            gross=gross, fee=fee, net=net, paid_at=paid_at, batch_id=batch,
                            kind=kind)
        return txn, settled_on, account or None

    def _batches(self, txns: list[tuple[SettlementTxn, date, str | None]],
                 name: str) -> list[SettlementBatch]:
        groups: dict[str, list[tuple[SettlementTxn, date, str | None]]] = {}
        for item in txns:
            groups.setdefault(item[0].batch_id, []).append(item)
        out = []
        for batch_id, items in groups.items():
            days = {d for _, d, _ in items}
            accounts = {a for _, _, a in items if a}
            if len(days) > 1 or len(accounts) > 1:
                first = items[0][0].line_no
                odd = next(t for t, d, a in items if d != items[0][1] or (a and a != items[0][2]))
                raise ParseError(f"batch {batch_id} has rows with different settlement days or "
                                 f"accounts (rows {first} and {odd.line_no})", source=name,
                                 line=odd.line_no)
            out.append(SettlementBatch(
                batch_id=batch_id, provider=self.profile.provider or self.name,
                settled_on=items[0][1], net_total=sum(t.net for t, _, _ in items),
                transactions=tuple(t for t, _, _ in items),
                account_number=next(iter(accounts), None)))
        return out


def make_adapter(profile: Profile) -> TableAdapter:
    return StatementProfile(profile) if profile.kind == "statement" else SettlementLayout(profile)
