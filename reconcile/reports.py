"""Reports per unit and day or period: JSON, CSV and XLSX.

One :class:`Report` holds five tables:

* **summary** — per competent unit: references issued, paid, settled (count and amount);
* **fees** — collected by fee item and kind, with the phí split into the unit's retained
  share and the budget's share by the item's retention rate (basis points, frozen on the
  reference when it was issued); lệ phí goes 100 % to the state budget. The split is done
  on each item's total, retained = ⌊amount × rate / 10 000⌋, budget = amount − retained,
  so the two always add up to the đồng;
* **mismatches** — open (and carried-over) mismatches by unit, category and age;
* **misrouted** — money for a unit's references that citizens paid into *another* unit's
  account (open ``wrong_account`` mismatches), by the unit owed and the unit holding it:
  the holding unit sees it among its mismatches, the unit owed sees it here;
* **runs** — each account-day's latest run and its sum check (unbalanced ones first).

"Settled in the period" means: the reference is settled and the first money matched to it
was on a statement day in the period. Headers are Vietnamese in CSV and XLSX (English
keys in JSON); XLSX money cells are numbers with the ``#,##0`` format, which Excel shows
as ``1.234.567`` under Vietnamese number settings.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select, true

from feepay.money import day_bounds, format_date, now_utc
from feepay.storage.tables import (
    AccountRow,
    ReferenceItemRow,
    ReferenceRow,
    UnitRow,
)
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow, ReconRunRow
from reconcile.models import CATEGORY_LABELS, Category

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

AGE_BUCKETS = ((1, "0-1"), (7, "2-7"), (30, "8-30"), (None, ">30"))
KIND_LABELS = {"phi": "Phí", "le_phi": "Lệ phí"}

#: table name -> (sheet title, [(key, Vietnamese header, type)]); type: text|int|money|date
TABLES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "summary": ("Tổng hợp", [
        ("unit", "Mã đơn vị", "text"), ("unit_name", "Đơn vị", "text"),
        ("issued", "Số mã đã phát hành", "int"), ("issued_amount", "Số tiền phát hành", "money"),
        ("cancelled", "Số mã đã hủy", "int"),
        ("paid", "Số mã đã thanh toán", "int"), ("paid_amount", "Số tiền đã thanh toán", "money"),
        ("settled", "Số mã đã đối soát", "int"),
        ("settled_amount", "Số tiền đã đối soát", "money"),
        ("received", "Tiền thực nhận trên sao kê", "money")]),
    "fees": ("Phí - lệ phí", [
        ("unit", "Mã đơn vị", "text"), ("unit_name", "Đơn vị", "text"),
        ("fee_code", "Mã khoản thu", "text"), ("fee_name", "Tên khoản thu", "text"),
        ("kind", "Loại", "text"), ("retention_pct", "Tỷ lệ để lại (%)", "pct"),
        ("items", "Số lượng", "int"), ("amount", "Số tiền thu", "money"),
        ("retained", "Đơn vị được để lại", "money"), ("budget", "Nộp ngân sách", "money")]),
    "mismatches": ("Chênh lệch", [
        ("unit", "Mã đơn vị", "text"), ("unit_name", "Đơn vị", "text"),
        ("category", "Loại chênh lệch", "text"), ("category_label", "Mô tả", "text"),
        ("open", "Số chưa xử lý", "int"), ("amount", "Số tiền treo", "money"),
        ("age_0_1", "0-1 ngày", "int"), ("age_2_7", "2-7 ngày", "int"),
        ("age_8_30", "8-30 ngày", "int"), ("age_over_30", "Trên 30 ngày", "int"),
        ("oldest_day", "Ngày cũ nhất", "date")]),
    "misrouted": ("Nộp nhầm tài khoản", [
        ("unit", "Mã đơn vị", "text"), ("unit_name", "Đơn vị được nộp", "text"),
        ("held_by", "Mã đơn vị nhận nhầm", "text"), ("held_by_name", "Đơn vị nhận nhầm", "text"),
        ("open", "Số khoản", "int"), ("amount", "Số tiền", "money"),
        ("oldest_day", "Ngày cũ nhất", "date")]),
    "runs": ("Đối soát", [
        ("day", "Ngày", "date"), ("account_id", "Tài khoản", "int"),
        ("unit", "Mã đơn vị", "text"), ("attempt", "Lần chạy", "int"),
        ("status", "Kết quả", "text"), ("lines", "Số dòng sao kê", "int"),
        ("statement_credits", "Tổng ghi có", "money"), ("matched", "Đã khớp", "money"),
        ("held", "Chênh lệch (treo)", "money"), ("matches", "Số khớp", "int"),
        ("mismatches", "Số chênh lệch", "int")]),
}
_AGE_KEYS = {"0-1": "age_0_1", "2-7": "age_2_7", "8-30": "age_8_30", ">30": "age_over_30"}


@dataclass
class Report:
    start: date
    end: date
    unit: str | None
    generated_at: datetime
    summary: list[dict[str, Any]] = field(default_factory=list)
    fees: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    misrouted: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        period = (format_date(self.start) if self.start == self.end
                  else f"từ {format_date(self.start)} đến {format_date(self.end)}")
        scope = f" — đơn vị {self.unit}" if self.unit else ""
        return f"Báo cáo thu phí, lệ phí và đối soát {period}{scope}"

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "unit": self.unit, "generated_at": self.generated_at.isoformat(),
                "title": self.title,
                **{name: getattr(self, name) for name in TABLES}}


def build_report(fp: FeePay, start: date, end: date | None = None, *,
                 unit: str | None = None, as_of: date | None = None) -> Report:
    """Gather the report for [start, end] (one day if ``end`` is omitted).

    Args:
        unit: a unit code; includes the units whose parent it is (a province).
        as_of: the day mismatch ages are counted to (default: ``end``).
    """
    end = end or start
    as_of = as_of or end
    report = Report(start, end, unit, now_utc())
    with fp.db.session() as s:
        names = dict(s.execute(select(UnitRow.code, UnitRow.name)).all())
        scope = _scope(s, unit)
        report.summary = _summary(s, start, end, scope, names)
        report.fees = _fees(s, start, end, scope, names)
        report.mismatches = _mismatches(s, end, as_of, scope, names)
        report.misrouted = _misrouted(s, end, scope, names)
        report.runs = _runs(s, start, end, scope)
    return report


def _scope(s: Session, unit: str | None) -> set[str] | None:
    if unit is None:
        return None
    return {unit} | set(s.scalars(select(UnitRow.code).where(UnitRow.parent_code == unit)))


def _in_scope(column: Any, scope: set[str] | None) -> Any:
    return column.in_(sorted(scope)) if scope is not None else true()


def _first_money() -> Any:
    """Per reference: the first statement day money was matched to it, and all of it."""
    M = ReconMatchRow
    return (select(M.reference_id, func.min(M.day).label("first_day"),
                    func.sum(M.amount).label("money"))
             .where(M.reference_id.is_not(None), M.amount > 0, M.rule != "refund")
             .group_by(M.reference_id).subquery())


def _summary(s: Session, start: date, end: date, scope: set[str] | None,
             names: dict[str, str]) -> list[dict[str, Any]]:
    R = ReferenceRow
    t0, t1 = day_bounds(start)[0], day_bounds(end)[1]
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(
        ("issued", "issued_amount", "cancelled", "paid", "paid_amount", "settled",
         "settled_amount", "received"), 0))
    for unit, n, amount, cancelled in s.execute(
            select(R.competent_unit, func.count(), func.sum(R.amount_due),
                   func.sum(_as_int(R.state == "cancelled")))
            .where(R.issued_at >= t0, R.issued_at < t1, _in_scope(R.competent_unit, scope))
            .group_by(R.competent_unit)):
        rows[unit].update(issued=n, issued_amount=int(amount or 0), cancelled=int(cancelled or 0))
    for unit, n, amount in s.execute(
            select(R.competent_unit, func.count(), func.sum(R.amount_due))
            .where(R.paid_at >= t0, R.paid_at < t1, _in_scope(R.competent_unit, scope))
            .group_by(R.competent_unit)):
        rows[unit].update(paid=n, paid_amount=int(amount or 0))
    first = _first_money()
    for unit, n, amount, money in s.execute(
            select(R.competent_unit, func.count(), func.sum(R.amount_due),
                   func.sum(first.c.money))
            .join(first, first.c.reference_id == R.id)
            .where(R.state == "settled", first.c.first_day.between(start, end),
                   _in_scope(R.competent_unit, scope))
            .group_by(R.competent_unit)):
        rows[unit].update(settled=n, settled_amount=int(amount or 0), received=int(money or 0))
    return [{"unit": u, "unit_name": names.get(u, u), **rows[u]} for u in sorted(rows)]


def _as_int(condition: Any) -> Any:
    return case((condition, 1), else_=0)


def _fees(s: Session, start: date, end: date, scope: set[str] | None,
          names: dict[str, str]) -> list[dict[str, Any]]:
    R, It = ReferenceRow, ReferenceItemRow
    first = _first_money()
    q = (select(R.competent_unit, It.fee_code, It.name, It.kind, It.retention_bp, func.count(),
                func.sum(It.amount))
         .join(It, It.reference_id == R.id).join(first, first.c.reference_id == R.id)
         .where(R.state == "settled", first.c.first_day.between(start, end),
                _in_scope(R.competent_unit, scope))
         .group_by(R.competent_unit, It.fee_code, It.name, It.kind, It.retention_bp))
    out = []
    for unit, code, name, kind, bp, n, amount in s.execute(q):
        amount = int(amount or 0)
        retained, budget = split_retention(amount, kind, bp)
        out.append({"unit": unit, "unit_name": names.get(unit, unit), "fee_code": code,
                    "fee_name": name, "kind": KIND_LABELS.get(kind, kind),
                    "retention_pct": f"{bp / 100:g}" if kind == "phi" else "0",
                    "items": n, "amount": amount, "retained": retained, "budget": budget})
    out.sort(key=lambda r: (r["unit"], r["fee_code"], r["retention_pct"]))
    return out


def split_retention(amount: int, kind: str, retention_bp: int) -> tuple[int, int]:
    """(retained by the unit, paid to the budget). Lệ phí: all to the budget.

    >>> split_retention(1_234_567, "phi", 9000)
    (1111110, 123457)
    >>> split_retention(50_000, "le_phi", 0)
    (0, 50000)
    """
    if kind != "phi":
        return 0, amount
    retained = amount * retention_bp // 10_000
    return retained, amount - retained


def _mismatches(s: Session, end: date, as_of: date, scope: set[str] | None,
                names: dict[str, str]) -> list[dict[str, Any]]:
    X, A = ReconMismatchRow, AccountRow
    q = (select(A.unit_code, X.category, X.amount, X.day)
         .join(A, A.id == X.account_id)
         .where(X.status.in_(("open", "carried_over")), X.day <= end,
                _in_scope(A.unit_code, scope)))
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for unit, category, amount, day in s.execute(q):
        g = groups.setdefault((unit, category), {
            "unit": unit, "unit_name": names.get(unit, unit), "category": category,
            "category_label": CATEGORY_LABELS[Category(category)][0], "open": 0, "amount": 0,
            **dict.fromkeys(_AGE_KEYS.values(), 0), "oldest_day": day})
        g["open"] += 1
        g["amount"] += amount
        g[_AGE_KEYS[age_bucket((as_of - day).days)]] += 1
        g["oldest_day"] = min(g["oldest_day"], day)
    return [groups[k] for k in sorted(groups)]


def _misrouted(s: Session, end: date, scope: set[str] | None,
               names: dict[str, str]) -> list[dict[str, Any]]:
    """Open ``wrong_account`` money by the unit its reference belongs to (in scope) and
    the unit whose account received it."""
    X, A, R = ReconMismatchRow, AccountRow, ReferenceRow
    q = (select(R.competent_unit, A.unit_code, func.count(), func.sum(X.amount),
                func.min(X.day))
         .join(A, A.id == X.account_id).join(R, R.code == X.reference_code)
         .where(X.category == Category.WRONG_ACCOUNT.value,
                X.status.in_(("open", "carried_over")), X.day <= end,
                _in_scope(R.competent_unit, scope))
         .group_by(R.competent_unit, A.unit_code)
         .order_by(R.competent_unit, A.unit_code))
    return [{"unit": unit, "unit_name": names.get(unit, unit), "held_by": holder,
             "held_by_name": names.get(holder, holder), "open": n, "amount": int(amount or 0),
             "oldest_day": oldest}
            for unit, holder, n, amount, oldest in s.execute(q)]


def age_bucket(days: int) -> str:
    for limit, label in AGE_BUCKETS:
        if limit is None or days <= limit:
            return label
    return AGE_BUCKETS[-1][1]


def _runs(s: Session, start: date, end: date, scope: set[str] | None) -> list[dict[str, Any]]:
    R, A = ReconRunRow, AccountRow
    q = (select(R, A.unit_code).join(A, A.id == R.account_id)
         .where(R.day.between(start, end), _in_scope(A.unit_code, scope))
         .order_by(R.day, R.account_id, R.attempt))
    latest: dict[tuple[date, int], dict[str, Any]] = {}
    for run, unit in s.execute(q):
        latest[(run.day, run.account_id)] = {
            "day": run.day, "account_id": run.account_id, "unit": unit,
            "attempt": run.attempt, "status": run.status, "lines": run.lines,
            "statement_credits": run.statement_credits, "matched": run.matched_amount,
            "held": run.held_amount, "matches": run.matches, "mismatches": run.mismatches}
    order = {"unbalanced": 0, "failed": 1, "balanced": 2}
    return sorted(latest.values(), key=lambda r: (order.get(r["status"], 3), r["day"],
                                                  r["account_id"]))


# --------------------------------------------------------------------------- writers


def to_json(report: Report) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=_json_default)


def _json_default(o: object) -> object:
    if isinstance(o, date | datetime):
        return o.isoformat()
    raise TypeError(type(o).__name__)


def write_csv(report: Report, directory: Path, prefix: str = "bao-cao") -> list[Path]:
    """One UTF-8 (with BOM, for Excel) CSV per table, Vietnamese headers, plain integers."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_title, columns) in TABLES.items():
        path = directory / f"{prefix}-{name}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([header for _k, header, _t in columns])
            for row in getattr(report, name):
                w.writerow([_csv_cell(row.get(k), t) for k, _h, t in columns])
        paths.append(path)
    return paths


def _csv_cell(value: Any, kind: str) -> Any:
    if value is None:
        return ""
    if kind == "date" and isinstance(value, date):
        return format_date(value)
    return value


MONEY_FORMAT = "#,##0"
DATE_FORMAT = "dd/mm/yyyy"


def write_xlsx(report: Report, path: Path) -> Path:
    """One sheet per table; title row, bold frozen header, ``#,##0`` money, dd/mm/yyyy."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    for name, (title, columns) in TABLES.items():
        ws = wb.create_sheet(title)
        ws.append([report.title])
        ws["A1"].font = Font(bold=True, size=12)
        ws.append([header for _k, header, _t in columns])
        for cell in ws[2]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for row in getattr(report, name):
            ws.append([_cell(row.get(k), kind) for k, _h, kind in columns])
        for i, (_k, header, kind) in enumerate(columns, start=1):
            letter = get_column_letter(i)
            ws.column_dimensions[letter].width = max(12, min(40, len(header) + 2))
            fmt = MONEY_FORMAT if kind in ("money", "int") else (
                DATE_FORMAT if kind == "date" else None)
            if fmt:
                for (cell,) in ws.iter_rows(min_row=3, min_col=i, max_col=i):
                    cell.number_format = fmt
        ws.freeze_panes = "A3"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def _cell(value: Any, kind: str) -> Any:
    """A sheet cell's value: a rate (text in JSON and CSV, ``"12.5"``) as a number, so a
    spreadsheet can compute with it and shows it with the reader's decimal comma."""
    if kind == "pct" and isinstance(value, str):
        rate = Decimal(value)
        return int(rate) if rate == rate.to_integral_value() else rate
    return value


def write_all(report: Report, directory: Path, prefix: str = "bao-cao") -> dict[str, Any]:
    """JSON + CSVs + XLSX into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{prefix}.json"
    json_path.write_text(to_json(report), encoding="utf-8")
    return {"json": json_path, "csv": write_csv(report, directory, prefix),
            "xlsx": write_xlsx(report, directory / f"{prefix}.xlsx")}


__all__ = ["Report", "TABLES", "build_report", "split_retention", "to_json", "write_all",
           "write_csv", "write_xlsx"]
