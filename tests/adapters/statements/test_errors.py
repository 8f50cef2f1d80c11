"""Bad files: each is refused with a message naming file, row/line, column and reason.

(The same files are imported into real databases in tests/core/test_statements_errors.py,
which also checks that nothing was stored.)
"""

from __future__ import annotations

import csv
import http.server
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.statements import parse_file
from adapters.statements.tabular import Profile
from feepay.exceptions import ConfigurationError, ParseError, ValidationError

DATA = Path(__file__).parent / "data"
VCB_CSV = DATA / "vietcombank" / "vcb_2025-11-01_03.csv"
VCB_XLSX = DATA / "vietcombank" / "vcb_2025-11-01_03.xlsx"
MT940 = DATA / "mt940" / "mt940_2025-11-01_02.sta"
VNPAY_CSV = DATA / "vnpay" / "vnpay_settlement_2025-11-02_03.csv"


def vcb_rows() -> list[list[str]]:
    with VCB_CSV.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def write_vcb(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def first_data_row(rows: list[list[str]]) -> int:
    return next(i for i, r in enumerate(rows) if r and r[0][:2].isdigit())


def refused(path: Path, fmt: str | None = None) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_file(path, fmt)
    return info.value


# -- spreadsheets and CSV ----------------------------------------------------------------------
def test_truncated_xlsx(tmp_path: Path) -> None:
    data = VCB_XLSX.read_bytes()
    bad = tmp_path / "truncated.xlsx"
    bad.write_bytes(data[: len(data) // 2])
    err = refused(bad)
    assert str(err).startswith("truncated.xlsx: not a readable xlsx workbook (truncated or corrupt")


def test_wrong_sheet_has_no_table(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "Tổng hợp"
    wb.active.append(["Tổng hợp giao dịch tháng 11", "", ""])
    wb.active.append(["Vietcombank", 12, 3])
    wb.save(tmp_path / "summary.xlsx")
    err = refused(tmp_path / "summary.xlsx", "vietcombank")
    assert "no header row with the columns 'Ngày giao dịch'" in str(err)
    assert "in sheet(s) 'Tổng hợp'" in str(err)


def test_wrong_sheet_for_a_profile_that_names_its_sheet(tmp_path: Path) -> None:
    src = Path(__file__).parents[3] / "adapters" / "statements" / "profiles" / "vietcombank.toml"
    named = 'name = "vcb-sheet"\nsheets = ["VCBACCOUNTDETAIL*"]'
    text = src.read_text(encoding="utf-8").replace('name = "vietcombank"', named)
    (tmp_path / "vcb-sheet.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ParseError) as info:
        parse_file(VCB_XLSX, "vcb-sheet", extra=[tmp_path / "vcb-sheet.toml"])
    assert str(info.value) == ("vcb_2025-11-01_03.xlsx: wrong sheet: no sheet named like "
                               "'VCBACCOUNTDETAIL*' (the workbook has 'Statement')")


def test_missing_column(tmp_path: Path) -> None:
    rows = vcb_rows()
    header = next(i for i, r in enumerate(rows) if r and r[0].startswith("Ngày giao dịch"))
    rows[header][3] = "Số tiền/\nAmount"
    bad = write_vcb(tmp_path / "no_credit.csv", rows)
    err = refused(bad, "vietcombank")
    assert str(err) == (f"no_credit.csv, row {header + 1}: missing column 'Số tiền ghi có' "
                        "(Số tiền ghi có / Credit) in the header row")
    assert "not a statement or settlement file in any known format" in str(refused(bad))


def test_bad_amount_names_row_and_column(tmp_path: Path) -> None:
    rows = vcb_rows()
    i = first_data_row(rows) + 3
    rows[i][3] = "12.5OO"
    rows[i][2] = ""
    err = refused(write_vcb(tmp_path / "bad_amount.csv", rows))
    assert str(err) == (f"bad_amount.csv, row {i + 1}, column 'Số tiền ghi có/ Credit': "
                        "'12.5OO' is not an amount")
    assert (err.line, err.column) == (i + 1, "Số tiền ghi có/ Credit")


def test_bad_date(tmp_path: Path) -> None:
    rows = vcb_rows()
    i = first_data_row(rows) + 1
    rows[i][0] = "31/02/2025 10:00:00"
    err = refused(write_vcb(tmp_path / "bad_date.csv", rows))
    assert str(err) == (f"bad_date.csv, row {i + 1}, column 'Ngày giao dịch/ Transaction "
                        "date': '31/02/2025 10:00:00' is not a valid date")


def test_empty_date_in_a_data_row(tmp_path: Path) -> None:
    rows = vcb_rows()
    i = first_data_row(rows) + 2
    rows[i][0] = ""
    err = refused(write_vcb(tmp_path / "no_date.csv", rows))
    assert str(err).endswith(f"row {i + 1}, column 'Ngày giao dịch/ Transaction date': "
                             "the date is empty")


def test_debit_and_credit_both_filled(tmp_path: Path) -> None:
    rows = vcb_rows()
    i = first_data_row(rows)
    rows[i][2] = rows[i][3] = "1,000"
    err = refused(write_vcb(tmp_path / "both.csv", rows))
    assert f"row {i + 1}" in str(err) and "both debit and credit hold an amount" in str(err)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    assert str(refused(tmp_path / "empty.csv")) == "empty.csv: the file is empty"
    assert str(refused(tmp_path / "empty.csv", "bidv")) == "empty.csv: the file is empty"


def test_binary_garbage(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    (tmp_path / "garbage.xlsx").write_bytes(bytes(rng.randrange(256) for _ in range(5000)))
    msg = ("garbage.xlsx: the file is not text in UTF-8 or UTF-16 nor a spreadsheet "
           "(binary or unknown content)")
    assert str(refused(tmp_path / "garbage.xlsx")) == msg
    assert str(refused(tmp_path / "garbage.xlsx", "mt940")) == msg


def test_utf16_without_bom_is_read(tmp_path: Path) -> None:
    raw = (DATA / "bidv" / "bidv_2025-11-01_03.txt").read_bytes()
    (tmp_path / "nobom.txt").write_bytes(raw[2:])  # drop the UTF-16-LE BOM
    adapter, statement = parse_file(tmp_path / "nobom.txt")
    assert adapter.name == "bidv" and len(statement.lines) == 15


# -- MT940 ----------------------------------------------------------------------------------------
def test_mt940_balance_mismatch(tmp_path: Path) -> None:
    text = MT940.read_bytes().decode("utf-8")
    first_close = text.index(":62F:")
    end = text.index("\r\n", first_close)
    line = text[first_close:end]
    amount = line[line.index("VND") + 3:-3]
    bad = text[:first_close] + line.replace(amount, str(int(amount) + 1000)) + text[end:]
    (tmp_path / "bad.sta").write_bytes(bad.encode("utf-8"))
    err = refused(tmp_path / "bad.sta")
    assert "≠ closing" in str(err) and "(difference 1.000 ₫)" in str(err)
    assert err.column == ":62F:" and err.line == text[:first_close].count("\n") + 1


def test_mt940_decimals_refused(tmp_path: Path) -> None:
    text = MT940.read_bytes().decode("utf-8").replace(",NTRFNONREF", ",50NTRFNONREF", 1)
    (tmp_path / "dec.sta").write_bytes(text.encode("utf-8"))
    err = refused(tmp_path / "dec.sta")
    assert "has decimals; VND amounts are whole đồng" in str(err) and err.column == ":61:"


def test_mt940_two_accounts_refused(tmp_path: Path) -> None:
    text = MT940.read_bytes().decode("utf-8")
    second = text.rindex(":25:")
    text = text[:second] + ":25:970436/9990009999999" + text[text.index("\r\n", second):]
    (tmp_path / "two.sta").write_bytes(text.encode("utf-8"))
    assert "statements for several accounts" in str(refused(tmp_path / "two.sta"))


# -- camt: XML attacks -----------------------------------------------------------------------
class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<x>leaked</x>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_counter() -> Iterator[tuple[str, list[str]]]:
    _Counter.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Counter.hits
    finally:
        server.shutdown()
        server.server_close()


CAMT_HEAD = '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'


@pytest.mark.parametrize("dtd", [
    '<!DOCTYPE Document [<!ENTITY xxe SYSTEM "{url}/secret">]>',
    '<!DOCTYPE Document [<!ENTITY % ext SYSTEM "{url}/dtd"> %ext;]>',
    '<!DOCTYPE Document SYSTEM "{url}/external.dtd">',
    '<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
])
def test_camt_external_entity_refused_nothing_fetched(tmp_path: Path, http_counter,  # noqa: ANN001
                                                       dtd: str) -> None:
    url, hits = http_counter
    xml = (f'<?xml version="1.0"?>\n{dtd.format(url=url)}\n{CAMT_HEAD}<BkToCstmrStmt><Stmt>'
           "<Id>&xxe;</Id></Stmt></BkToCstmrStmt></Document>\n")
    (tmp_path / "xxe.xml").write_text(xml, encoding="utf-8")
    err = refused(tmp_path / "xxe.xml")
    assert "refused: the XML declares a DTD or entities" in str(err)
    assert hits == []


def test_camt_entity_expansion_bomb_refused_memory_flat(tmp_path: Path) -> None:
    levels = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    levels += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE Document [{"".join(levels)}]>\n{CAMT_HEAD}'
           "<BkToCstmrStmt><Stmt><Id>&lol9;</Id></Stmt></BkToCstmrStmt></Document>\n")
    (tmp_path / "bomb.xml").write_text(xml, encoding="utf-8")
    tracemalloc.start()
    try:
        err = refused(tmp_path / "bomb.xml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "refused: the XML declares a DTD or entities" in str(err)
    assert peak < 5 * 1024 * 1024, f"peak {peak} bytes while refusing the bomb"


def test_camt_not_well_formed(tmp_path: Path) -> None:
    good = (DATA / "camt.053" / "camt053_v08.xml").read_text(encoding="utf-8")
    (tmp_path / "cut.xml").write_text(good[: len(good) // 2], encoding="utf-8")
    err = refused(tmp_path / "cut.xml")
    assert "not well-formed XML" in str(err) and err.line is not None


def test_camt_balance_mismatch_names_the_statement(tmp_path: Path) -> None:
    good = (DATA / "camt.053" / "camt053_v04.xml").read_text(encoding="utf-8")
    bad = good.replace("<Cd>CLBD</Cd>", "<Cd>CLBD</Cd>", 1)
    start = bad.index("<Cd>CLBD</Cd>")
    amount_at = bad.index('<Amt Ccy="VND">', start) + len('<Amt Ccy="VND">')
    end = bad.index("<", amount_at)
    bad = bad[:amount_at] + str(int(bad[amount_at:end]) + 500) + bad[end:]
    (tmp_path / "bal.xml").write_text(bad, encoding="utf-8")
    err = refused(tmp_path / "bal.xml")
    assert "statement 053-04-0001" in str(err) and "(difference 500 ₫)" in str(err)


def test_camt_foreign_currency_refused(tmp_path: Path) -> None:
    good = (DATA / "camt.054" / "camt054_v05.xml").read_text(encoding="utf-8")
    (tmp_path / "usd.xml").write_text(good.replace('Ccy="VND">8000<', 'Ccy="USD">8000<', 1),
                                      encoding="utf-8")
    assert "currency USD: only VND accounts are supported" in str(refused(tmp_path / "usd.xml"))


# -- settlement files ----------------------------------------------------------------------------
def test_settlement_net_mismatch(tmp_path: Path) -> None:
    rows = list(csv.reader(VNPAY_CSV.read_text(encoding="utf-8-sig").splitlines()))
    i = next(k for k, r in enumerate(rows) if r and r[0] == "3")
    rows[i][8] = "1.000"
    with (tmp_path / "vnpay.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    err = refused(tmp_path / "vnpay.csv")
    assert f"row {i + 1}" in str(err) and "not the net 1000" in str(err)


def test_settlement_duplicate_transaction(tmp_path: Path) -> None:
    rows = list(csv.reader(VNPAY_CSV.read_text(encoding="utf-8-sig").splitlines()))
    i = next(k for k, r in enumerate(rows) if r and r[0] == "2")
    rows[i][1] = rows[i - 1][1]
    with (tmp_path / "dup.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    err = refused(tmp_path / "dup.csv")
    assert f"appears twice (rows {i} and {i + 1})" in str(err)


def test_settlement_total_mismatch(tmp_path: Path) -> None:
    rows = list(csv.reader(VNPAY_CSV.read_text(encoding="utf-8-sig").splitlines()))
    rows[-1][1] = "1.000.000"
    with (tmp_path / "total.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert "differs from the sum of the rows" in str(refused(tmp_path / "total.csv"))


# -- user profiles -------------------------------------------------------------------------------
USER_PROFILE = (Path(__file__).with_name("demo_signed.toml")  # also a plugin's, test_plugins
                .read_text(encoding="utf-8"))


def test_user_profile_from_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "demo.toml").write_text(USER_PROFILE, encoding="utf-8")
    (tmp_path / "demo.csv").write_text(
        "NGÂN HÀNG DEMO\nNgày;Số tiền;Loại;Nội dung\n01/11/2025;8.000;C;FP nop phi\n"
        "01/11/2025;-1.100;D;Phi SMS\n02/11/2025;(2.000);Ghi nợ;Phi khac\n", encoding="utf-8")
    monkeypatch.setenv("FEEPAY_STATEMENT_PROFILES", str(tmp_path / "profiles"))
    adapter, st = parse_file(tmp_path / "demo.csv")
    assert adapter.name == "demo-signed"
    assert [(ln.amount, ln.direction.value) for ln in st.lines] == [
        (8000, "credit"), (1100, "debit"), (2000, "debit")]


@pytest.mark.parametrize(("text", "needle"), [
    ('name = "Bad Name"\n[columns]\nposting_date=["x"]\nmemo=["y"]\namount=["z"]', "`name`"),
    ('name = "x"\ncolour = "red"', "unknown key(s) colour"),
    ('name = "x"\n[columns]\nposting_date=["d"]\nmemo=["m"]', "`debit` and `credit`"),
    ('name = "x"\n[columns]\nposting_date=["d"]\nmemo=["m"]\namount=["a"]\nfoo=["f"]',
     "unknown column field(s) ['foo']"),
    ('name = "x"\n[columns\n', "statement profile"),
])
def test_bad_user_profile_is_a_configuration_error(tmp_path: Path, text: str,
                                                   needle: str) -> None:
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Profile.load(tmp_path / "p.toml")
    assert needle in str(info.value)


def test_unknown_format_and_missing_profile_path(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown format 'nope'; known: agribank"):
        parse_file(VCB_CSV, "nope")
    with pytest.raises(ValidationError, match="does not exist"):
        parse_file(VCB_CSV, extra=[tmp_path / "missing.toml"])
