"""Every refused file: `feepay statements import` exits 2 with file/row/column/reason on
stderr, and nothing at all is stored (no line, no import record, no batch). Both databases."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementImportRow,
    StatementLineRow,
)
from webapp.cli import main

DATA = Path(__file__).parents[1] / "adapters" / "statements" / "data"
VCB_CSV = DATA / "vietcombank" / "vcb_2025-11-01_03.csv"
VCB_XLSX = DATA / "vietcombank" / "vcb_2025-11-01_03.xlsx"
CAMT = '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'


def _vcb(tmp: Path, name: str, edit: Callable[[list[list[str]]], None]) -> Path:
    with VCB_CSV.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with (tmp / name).open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return tmp / name


def _data_row(rows: list[list[str]], k: int) -> list[str]:
    return [r for r in rows if r and r[0][:2].isdigit()][k]


def _truncated(tmp: Path) -> Path:
    data = VCB_XLSX.read_bytes()
    (tmp / "truncated.xlsx").write_bytes(data[: len(data) * 2 // 3])
    return tmp / "truncated.xlsx"


def _summary_sheet(tmp: Path) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "Tong hop"
    wb.active.append(["NGÂN HÀNG TMCP NGOẠI THƯƠNG VIỆT NAM"])
    wb.active.append(["Tổng phát sinh", 1000])
    wb.save(tmp / "summary.xlsx")
    return tmp / "summary.xlsx"


def _missing_column(tmp: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        header = next(r for r in rows if r and r[0].startswith("Ngày giao dịch"))
        header[3] = "Số tiền"
    return _vcb(tmp, "missing.csv", edit)


def _bad_amount(tmp: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        row = _data_row(rows, 2)
        row[2], row[3] = "", "12.5OO"
    return _vcb(tmp, "amount.csv", edit)


def _bad_date(tmp: Path) -> Path:
    return _vcb(tmp, "date.csv", lambda rows: _data_row(rows, 4).__setitem__(0, "2025/11/02"))


def _balance(tmp: Path) -> Path:
    return _vcb(tmp, "balance.csv", lambda rows: rows[-1].__setitem__(1, "12,205,000"))


def _other_account(tmp: Path) -> Path:
    return _vcb(tmp, "other.csv", lambda rows: rows[3].__setitem__(1, "9990009999999"))


def _empty(tmp: Path) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _garbage(tmp: Path) -> Path:
    rng = random.Random(3)
    (tmp / "garbage.bin").write_bytes(bytes(rng.randrange(256) for _ in range(20_000)))
    return tmp / "garbage.bin"


def _xxe(tmp: Path) -> Path:
    (tmp / "xxe.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f"\n{CAMT}<BkToCstmrStmt><Stmt><Id>&x;</Id></Stmt></BkToCstmrStmt></Document>",
        encoding="utf-8")
    return tmp / "xxe.xml"


def _bomb(tmp: Path) -> Path:
    ents = ['<!ENTITY a0 "aaaaaaaaaa">'] + [
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)]
    (tmp / "bomb.xml").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE Document [{"".join(ents)}]>\n{CAMT}<BkToCstmrStmt>'
        "<Stmt><Id>&a9;</Id></Stmt></BkToCstmrStmt></Document>", encoding="utf-8")
    return tmp / "bomb.xml"


def _mt940(tmp: Path) -> Path:
    text = (DATA / "mt940" / "mt940_2025-11-01_02.sta").read_bytes().decode()
    (tmp / "bad.sta").write_bytes(text.replace(":62F:C", ":62F:D", 1).encode())
    return tmp / "bad.sta"


def _settlement(tmp: Path) -> Path:
    src = DATA / "vnpay" / "vnpay_settlement_2025-11-02_03.csv"
    with src.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    next(r for r in rows if r and r[0] == "2")[7] = "abc"
    with (tmp / "vnpay.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return tmp / "vnpay.csv"


CASES = [
    ("truncated xlsx", _truncated, (), "truncated.xlsx: not a readable xlsx workbook "
                                        "(truncated or corrupt"),
    ("wrong sheet", _summary_sheet, ("--format", "vietcombank"),
     "summary.xlsx: no header row with the columns 'Ngày giao dịch', 'Số tiền ghi nợ', "
     "'Số tiền ghi có', 'Mô tả' was found in sheet(s) 'Tong hop'"),
    ("missing column", _missing_column, ("--format", "vietcombank"),
     "missing.csv, row 10: missing column 'Số tiền ghi có' (Số tiền ghi có / Credit) in the "
     "header row"),
    ("bad amount", _bad_amount, (), "amount.csv, row 13, column 'Số tiền ghi có/ Credit': "
                                    "'12.5OO' is not an amount"),
    ("bad date", _bad_date, (), "date.csv, row 15, column 'Ngày giao dịch/ Transaction date': "
                                "'2025/11/02' is not a date (dd/mm/yyyy)"),
    ("balance mismatch", _balance, (), "balance.csv, column 'closing balance': balances do not "
                                       "add up: opening 12.346.000 ₫ + credits"),
    ("wrong account", _other_account, (), "account: other.csv: the file is for account "
                                          "•••••••••9999, not account"),
    ("empty file", _empty, (), "empty.csv: the file is empty"),
    ("binary garbage", _garbage, (), "garbage.bin: the file is not text in UTF-8 or UTF-16 nor "
                                     "a spreadsheet"),
    ("camt external entity", _xxe, (), "xxe.xml: refused: the XML declares a DTD or entities"),
    ("camt entity bomb", _bomb, (), "bomb.xml: refused: the XML declares a DTD or entities"),
    ("mt940 balance", _mt940, (), "≠ closing"),
    ("settlement bad fee", _settlement, (), "column 'Phí': 'abc' is not an amount"),
]


@pytest.fixture
def account(fp) -> int:  # noqa: ANN001
    fp.units.add("40", "Tỉnh Nghệ An (thử nghiệm)", "province")
    return fp.accounts.register("40", "970436", "9990001234567", "DON VI THU PHI TEST").id


@pytest.mark.parametrize(("make", "extra", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_refused_with_reason_and_nothing_stored(fp, db_url, account, tmp_path,  # noqa: ANN001
                                                make, extra, message) -> None:
    path = make(tmp_path)
    res = CliRunner().invoke(main, ["--db", db_url, "statements", "import", str(path),
                                    "--account", str(account), *extra])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.startswith("error: ") and message in res.stderr, res.stderr
    with fp.db.session() as s:
        for table in (StatementLineRow, StatementImportRow, SettlementBatchRow,
                      SettlementTxnRow):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__
