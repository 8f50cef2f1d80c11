"""Statement import into real databases: exact de-duplication, import records, memos,
account checks, settlement files, the CLI. Runs on SQLite and PostgreSQL (``fp``)."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters.statements import import_file
from feepay.exceptions import Conflict, ParseError, ValidationError
from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.money import VN_TZ
from feepay.reference import codes_in_normalized, find_in_text, normalize_memo
from feepay.statements import Line, StatementInfo, StatementStream, fingerprint
from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementImportRow,
    StatementLineRow,
)
from webapp.cli import main

DATA = Path(__file__).parents[1] / "adapters" / "statements" / "data"
VCB_XLSX = DATA / "vietcombank" / "vcb_2025-11-01_03.xlsx"
VCB_CSV = DATA / "vietcombank" / "vcb_2025-11-01_03.csv"
VNPAY_XLSX = DATA / "vnpay" / "vnpay_settlement_2025-11-02_03.xlsx"
VNPAY_CSV = DATA / "vnpay" / "vnpay_settlement_2025-11-02_03.csv"
VCB_NUMBER = "9990001234567"


@pytest.fixture
def accounts(fp) -> dict[str, int]:  # noqa: ANN001
    """A province and collection accounts whose numbers match the samples."""
    fp.units.add("40", "Tỉnh Nghệ An (thử nghiệm)", "province")
    out = {}
    for key, bank, number in (("vcb", "970436", VCB_NUMBER), ("bidv", "970418", "99912000345"),
                              ("camt", "970415", "9990007654321"),
                              ("vcb_at_bidv", "970418", VCB_NUMBER)):
        out[key] = fp.accounts.register("40", bank, number, f"DON VI THU PHI {key.upper()}").id
    return out


def counts(fp) -> dict[str, int]:  # noqa: ANN001
    with fp.db.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in (
            StatementLineRow, StatementImportRow, SettlementBatchRow, SettlementTxnRow)}


def vcb_csv(path: Path, rows: list[tuple[datetime, str, int, str, str]],
            number: str = VCB_NUMBER) -> Path:
    """A Vietcombank-layout CSV (no balances) with the given (moment, ref, amount, C/D, memo)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerows([["NGÂN HÀNG TMCP NGOẠI THƯƠNG VIỆT NAM"], ["Số tài khoản/Account number:", number],
                 ["Ngày giao dịch", "Số tham chiếu", "Số tiền ghi nợ", "Số tiền ghi có", "Mô tả"]])
    for moment, ref, amount, mark, memo in rows:
        w.writerow([moment.strftime("%d/%m/%Y %H:%M:%S"), ref,
                    f"{amount:,}" if mark == "D" else "", f"{amount:,}" if mark == "C" else "",
                    memo])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


# -- de-duplication -----------------------------------------------------------------------------
def test_same_file_twice_stores_nothing_new(fp, accounts) -> None:  # noqa: ANN001
    _, first = import_file(fp, VCB_XLSX, accounts["vcb"], actor="ke.toan")
    _, second = import_file(fp, VCB_XLSX, accounts["vcb"], actor="ke.toan")
    assert (first.lines, first.new, first.duplicates) == (15, 15, 0)
    assert (second.lines, second.new, second.duplicates) == (15, 0, 15)
    assert counts(fp)["statement_lines"] == 15
    imports = fp.statements.list_imports(accounts["vcb"])
    assert [(r["lines_new"], r["lines_duplicate"]) for r in imports] == [(0, 15), (15, 0)]
    assert imports[0]["file_name"] == "vcb_2025-11-01_03.xlsx"
    assert imports[0]["file_sha256"] == imports[1]["file_sha256"] and len(
        imports[0]["file_sha256"]) == 64
    assert imports[0]["actor"] == "ke.toan" and imports[0]["imported_at"].tzinfo is not None
    assert (imports[0]["period_start"], imports[0]["period_end"]) == (date(2025, 11, 1),
                                                                      date(2025, 11, 3))
    entries = fp.audit.entries("statement_import")
    assert [e["action"] for e in entries].count("statements.import") == 2


def test_xlsx_and_csv_of_the_same_period_are_the_same_lines(fp, accounts) -> None:  # noqa: ANN001
    import_file(fp, VCB_XLSX, accounts["vcb"])
    _, again = import_file(fp, VCB_CSV, accounts["vcb"])
    assert again.new == 0 and again.duplicates == 15


def test_two_identical_lines_in_one_file_both_stay(fp, accounts) -> None:  # noqa: ANN001
    import_file(fp, VCB_CSV, accounts["vcb"])
    rows = fp.statements.lines(accounts["vcb"])
    twins = [r for r in rows if r["occurrence"] == 2]
    assert len(twins) == 1
    first = next(r for r in rows if r["fingerprint"] == twins[0]["fingerprint"]
                 and r["occurrence"] == 1)
    keys = ("posting_date", "value_at", "amount", "direction", "memo_raw", "bank_ref")
    assert {k: first[k] for k in keys} == {k: twins[0][k] for k in keys}


def test_overlapping_statements_store_only_new_lines(fp, accounts, tmp_path) -> None:  # noqa: ANN001
    day = datetime(2025, 11, 1, 9, 0, tzinfo=VN_TZ)
    lines = []
    for d in range(4):
        for k in range(3):
            moment = day + timedelta(days=d, hours=k)
            lines.append((moment, f"REF{d}{k}", 10_000 + k, "C", f"FP nop phi ngay {d} lan {k}"))
        lines.append((day + timedelta(days=d, hours=5), f"FEE{d}", 1_100, "D", "Phi SMS"))
    nov1_3 = vcb_csv(tmp_path / "01-03.csv", [x for x in lines if x[0].day <= 3])
    nov2_4 = vcb_csv(tmp_path / "02-04.csv", [x for x in lines if x[0].day >= 2])
    _, a = import_file(fp, nov1_3, accounts["vcb"])
    _, b = import_file(fp, nov2_4, accounts["vcb"])
    assert (a.lines, a.new) == (12, 12)
    assert (b.lines, b.new, b.duplicates) == (12, 4, 8)
    stored = fp.statements.lines(accounts["vcb"])
    assert sorted(r["bank_ref"] for r in stored) == sorted(x[1] for x in lines)


def test_fingerprint_is_documented_and_stable() -> None:
    line = Line(1, date(2025, 11, 3), 50_000, "credit",
                datetime(2025, 11, 3, 9, 30, 59, tzinfo=VN_TZ), "FT25307", "Nộp phí FP 7K")
    import hashlib

    def documented(when: str) -> str:
        key = f"2025-11-03|{when}|credit|50000|FT25307|NOPPHIFP7K"  # value time: UTC
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    assert fingerprint(line) == documented("2025-11-03 02:30:59")
    # a time without seconds (or at :00) keeps the minute-only form it always had
    at_minute = line._replace(value_at=line.value_at.replace(second=0))
    assert fingerprint(at_minute) == documented("2025-11-03 02:30")
    assert fingerprint(line._replace(value_at=line.value_at.replace(microsecond=250_000))) \
        == documented("2025-11-03 02:30:59.250000")
    assert fingerprint(line._replace(value_at=None)) == documented("")
    # raw-memo spelling does not matter; the second, amount, day and ref do
    assert fingerprint(line._replace(memo="nop phi fp-7k")) == fingerprint(line)
    assert fingerprint(line._replace(value_at=line.value_at.replace(second=1))) \
        != fingerprint(line)
    assert fingerprint(line._replace(amount=50_001)) != fingerprint(line)


def test_stored_fingerprint_is_the_documented_one(fp, accounts) -> None:  # noqa: ANN001
    """The import's inlined per-line path and :func:`fingerprint` agree, line by line."""
    _, result = import_file(fp, VCB_CSV, accounts["vcb"])
    stored = fp.statements.lines(accounts["vcb"])
    assert len(stored) == result.lines == 15
    for r in stored:
        line = Line(r["line_no"], r["posting_date"], r["amount"], r["direction"],
                    r["value_at"], r["bank_ref"], r["memo_raw"])
        assert r["fingerprint"] == fingerprint(line)


def test_split_inside_a_minute_keeps_both_payments(fp, accounts, tmp_path) -> None:  # noqa: ANN001
    """Two real credits, same amount and memo, no bank reference, at 09:05:10 and 09:05:40,
    in two files that do not overlap: both are stored (the fingerprint keeps seconds)."""
    at = datetime(2025, 11, 3, 9, 5, 10, tzinfo=VN_TZ)
    first = (at, "", 50_000, "C", "FP7K3MQ9XA4C nop phi")
    second = (at + timedelta(seconds=30), "", 50_000, "C", "FP7K3MQ9XA4C nop phi")
    part1 = vcb_csv(tmp_path / "to-0905-30.csv", [first])
    part2 = vcb_csv(tmp_path / "from-0905-30.csv", [second])
    both = vcb_csv(tmp_path / "whole-minute.csv", [first, second])
    _, a = import_file(fp, part1, accounts["vcb"])
    _, b = import_file(fp, part2, accounts["vcb"])
    assert (a.new, b.new) == (1, 1)
    # the same files again and an export overlapping both store nothing new
    for path in (part1, part2, both):
        _, again = import_file(fp, path, accounts["vcb"])
        assert again.new == 0 and again.duplicates == again.lines
    stored = fp.statements.lines(accounts["vcb"])
    assert sorted(r["value_at"].astimezone(VN_TZ).second for r in stored) == [10, 40]
    assert [r["occurrence"] for r in stored] == [1, 1]


def test_minute_only_export_still_deduplicates(fp, accounts, tmp_path) -> None:  # noqa: ANN001
    """A template printing HH:MM only: the same file twice, and an overlapping one, store
    each line once; two identical lines in one minute are occurrences 1 and 2."""
    at = datetime(2025, 11, 3, 9, 5, tzinfo=VN_TZ)
    rows = [(at, "", 50_000, "C", "FP nop phi"), (at, "", 50_000, "C", "FP nop phi"),
            (at + timedelta(minutes=1), "", 8_000, "C", "FP khac")]

    def minute_csv(path: Path, picked: list[tuple]) -> Path:
        vcb_csv(path, picked)
        text = path.read_text(encoding="utf-8").replace(":00,", ",")  # drop the seconds
        path.write_text(text, encoding="utf-8")
        return path

    whole = minute_csv(tmp_path / "whole.csv", rows)
    assert "03/11/2025 09:05," in whole.read_text(encoding="utf-8")
    _, a = import_file(fp, minute_csv(tmp_path / "first.csv", rows[:2]), accounts["vcb"])
    _, b = import_file(fp, whole, accounts["vcb"])
    _, c = import_file(fp, whole, accounts["vcb"])
    assert (a.new, b.new, c.new) == (2, 1, 0)
    assert sorted(r["occurrence"] for r in fp.statements.lines(accounts["vcb"])) == [1, 1, 2]


# -- memos ----------------------------------------------------------------------------------------
def test_raw_memo_kept_normalised_memo_and_codes_beside_it(fp, accounts) -> None:  # noqa: ANN001
    import_file(fp, VCB_CSV, accounts["vcb"])
    rows = fp.statements.lines(accounts["vcb"])
    viet = next(r for r in rows if r["memo_raw"].startswith("Nộp phí chứng thực"))
    assert viet["memo_norm"].startswith("NOPPHICHUNGTHUCFP")
    assert viet["memo_norm"].isalnum() and viet["memo_norm"].isupper()
    assert viet["codes"] and all(c.startswith("FP") and len(c) == 12
                                 for c in viet["codes"].split())
    glued = next(r for r in rows if r["memo_raw"].startswith("CT DEN:"))
    assert glued["codes"].lower() in glued["memo_raw"]  # found inside 'fp…-CTLNhanh'
    fee = next(r for r in rows if r["direction"] == "debit")
    assert fee["codes"] == ""


# -- refusals (nothing stored) -----------------------------------------------------------------
def test_file_for_another_account_is_refused(fp, accounts) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError) as info:
        import_file(fp, VCB_CSV, accounts["bidv"])
    assert f"the file is for account •••••••••4567, not account {accounts['bidv']}" in str(
        info.value)
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


def test_export_of_another_bank_is_refused(fp, accounts) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError, match="this is a Vietcombank export but account .* "
                                              "is at BIDV"):
        import_file(fp, VCB_XLSX, accounts["vcb_at_bidv"])
    assert counts(fp)["statement_lines"] == 0


def test_balance_mismatch_is_refused(fp, accounts, tmp_path) -> None:  # noqa: ANN001
    text = VCB_CSV.read_bytes().decode("utf-8-sig")
    closing = text.rsplit("\r\n", 2)[-2]
    amount = closing.split(",", 1)[1]
    bad = text.replace(closing, closing.replace(amount, '"12,206,500"'))
    (tmp_path / "bad.csv").write_bytes(bad.encode("utf-8-sig"))
    with pytest.raises(ParseError, match=r"balances do not add up: .* \(difference 500 ₫\)"):
        import_file(fp, tmp_path / "bad.csv", accounts["vcb"])
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


def test_unknown_account_is_not_found(fp, accounts) -> None:  # noqa: ANN001
    from feepay.exceptions import NotFound

    with pytest.raises(NotFound):
        import_file(fp, VCB_CSV, 999_999)


def test_bad_line_after_good_ones_stores_nothing(fp, accounts) -> None:  # noqa: ANN001
    def lines():
        yield Line(1, date(2025, 11, 1), 1000, "credit", memo="ok")
        raise ParseError("'x' is not an amount", source="s.csv", line=2, column="Có")

    stream = StatementStream(StatementInfo("s.csv", "test"), lines())
    with pytest.raises(ParseError):
        fp.statements.import_stream(stream, accounts["vcb"], file_name="s.csv",
                                    file_sha256="0" * 64, file_size=1)
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


# -- other formats end to end -----------------------------------------------------------------
@pytest.mark.parametrize("sample", ["camt.053/camt053_v02.xml", "camt.053/camt053_v08.xml",
                                    "camt.054/camt054_v06.xml"])
def test_camt_versions_import_the_same_lines(fp, accounts, sample: str) -> None:  # noqa: ANN001
    _, first = import_file(fp, DATA / "camt.053" / "camt053_v05.xml", accounts["camt"])
    _, other = import_file(fp, DATA / sample, accounts["camt"])
    assert first.new == 12 and other.new == 0 and other.duplicates == 12


def test_value_times_stored_aware_utc(fp, accounts) -> None:  # noqa: ANN001
    import_file(fp, DATA / "bidv" / "bidv_2025-11-01_03.txt", accounts["bidv"])
    rows = fp.statements.lines(accounts["bidv"])
    assert all(r["value_at"].utcoffset() == timedelta(0) for r in rows)
    first = min(rows, key=lambda r: r["value_at"])
    assert first["value_at"].astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M") == "01/11/2025 08:02"


# -- settlement files -----------------------------------------------------------------------------
def test_settlement_file_import_and_reimport(fp, accounts) -> None:  # noqa: ANN001
    adapter, first = import_file(fp, VNPAY_XLSX, accounts["vcb"])
    _, again = import_file(fp, VNPAY_CSV, accounts["vcb"])
    assert adapter.name == "vnpay" and (first.kind, first.batches) == ("settlement", 2)
    assert (first.lines, first.new) == (8, 8) and (again.new, again.duplicates) == (0, 8)
    with fp.db.session() as s:
        batches = s.scalars(select(SettlementBatchRow)
                            .order_by(SettlementBatchRow.settled_on)).all()
        txns = s.scalars(select(SettlementTxnRow)).all()
    assert [(b.batch_id, b.settled_on) for b in batches] == [
        ("vnpay-20251102", date(2025, 11, 2)), ("vnpay-20251103", date(2025, 11, 3))]
    for b in batches:
        mine = [t for t in txns if t.batch_pk == b.id]
        assert b.net_total == sum(t.net for t in mine) and b.txn_count == len(mine)
    refund = next(t for t in txns if t.kind == "refund")
    assert refund.gross < 0 and refund.net == refund.gross - refund.fee
    assert all(t.reference and t.reference == t.order_ref for t in txns)


@pytest.mark.parametrize(("change", "needle"), [
    ({8: "1.000", 6: "2.100"}, "batch vnpay-20251102 was already imported with net"),
    ({1: "99999999"}, "batch vnpay-20251102 was already imported; this file adds 1"),
])
def test_settlement_batch_reissued_differently_is_refused(fp, accounts, tmp_path,  # noqa: ANN001
                                                          change, needle) -> None:
    import_file(fp, VNPAY_CSV, accounts["vcb"])
    before = counts(fp)
    with VNPAY_CSV.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    row = next(r for r in rows if r and r[0] == "1")
    for col, value in change.items():
        row[col] = value
    rows.pop()  # drop the file total
    with (tmp_path / "again.csv").open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(Conflict, match=needle):
        import_file(fp, tmp_path / "again.csv", accounts["vcb"])
    assert counts(fp) == before


@pytest.mark.parametrize(("read", "needle"), [
    (True, "a vnpay batch with the same id is already stored"),
    # two imports at the same moment both pass the read: the unique index decides
    (False, "another provider's batch with the same id"),
])
def test_a_batch_id_another_provider_used_is_refused(fp, accounts, monkeypatch,  # noqa: ANN001
                                                     read: bool, needle: str) -> None:
    """Reconciliation tells batches apart by id: a MoMo batch under an id VNPAY already
    used is refused with the reason, and nothing of its file is stored — also when the
    import's read did not see the other batch."""
    import feepay.statements as statements

    import_file(fp, VNPAY_CSV, accounts["vcb"])
    before = counts(fp)
    if not read:
        monkeypatch.setattr(statements, "_check_batch_id_free", lambda s, batch: None)
    txn = SettlementTxn(line_no=1, provider_txn_id="M1", reference=None, gross=5_000, fee=100,
                        net=4_900, batch_id="vnpay-20251102")
    momo = SettlementFile(source="momo.csv", format="momo", batches=(SettlementBatch(
        batch_id="vnpay-20251102", provider="momo", settled_on=date(2025, 11, 2),
        net_total=4_900, transactions=(txn,)),))
    with pytest.raises(Conflict, match=f"momo batch vnpay-20251102: {needle}"):
        fp.statements.import_settlement(momo, accounts["vcb"], file_name="momo.csv",
                                        file_sha256="m" * 64, file_size=1)
    assert counts(fp) == before


@pytest.mark.parametrize("field", ["memo", "bank_ref", "counterparty_name",
                                   "counterparty_account"])
def test_a_nul_character_in_a_line_is_refused_by_line_and_field(
        fp, accounts, field: str) -> None:  # noqa: ANN001
    """PostgreSQL cannot store a NUL and SQLite's JSON functions cut text at one: a damaged
    file is refused on both databases alike, naming where, and nothing is stored."""
    def lines():
        yield Line(1, date(2025, 11, 1), 1000, "credit", memo="ok")
        yield Line(2, date(2025, 11, 1), 2000, "credit",
                   **{"memo": "ok", field: "FT\x00123"})

    stream = StatementStream(StatementInfo("s.csv", "test"), lines())
    with pytest.raises(ParseError, match=f"the {field.replace('_', ' ')} holds a NUL") as err:
        fp.statements.import_stream(stream, accounts["vcb"], file_name="s.csv",
                                    file_sha256="0" * 64, file_size=1)
    assert (err.value.source, err.value.line) == ("s.csv", 2)
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


@pytest.mark.parametrize(("txn_id", "batch_id", "ref", "field"), [
    ("M\x001", "vnpay-20251102", None, "provider txn id"),
    ("M1", "vnpay\x00-1", None, "batch id"),
    ("M1", "vnpay-20251102", "FP\x00X", "reference")])
def test_a_nul_character_in_a_settlement_is_refused(
        fp, accounts, txn_id: str, batch_id: str, ref: str | None,  # noqa: ANN001
        field: str) -> None:
    txn = SettlementTxn(line_no=3, provider_txn_id=txn_id, reference=ref, gross=5_000,
                        fee=100, net=4_900, batch_id=batch_id)
    sf = SettlementFile(source="vnpay.csv", format="vnpay", batches=(SettlementBatch(
        batch_id=batch_id, provider="vnpay", settled_on=date(2025, 11, 2), net_total=4_900,
        transactions=(txn,)),))
    with pytest.raises(ParseError, match=f"the {field} holds a NUL character") as err:
        fp.statements.import_settlement(sf, accounts["vcb"], file_name="vnpay.csv",
                                        file_sha256="v" * 64, file_size=1)
    assert (err.value.source, err.value.line) == ("vnpay.csv", None if field == "batch id" else 3)
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


def test_a_nul_character_in_an_account_number_is_refused_as_such(fp, accounts) -> None:  # noqa: ANN001
    """Not as "the file is for another account": masked, the two numbers look alike."""
    stream = StatementStream(StatementInfo("s.csv", "test", account_number="999\x00"),
                             iter([Line(1, date(2025, 11, 1), 1000, "credit", memo="ok")]))
    with pytest.raises(ParseError, match="the account number holds a NUL character"):
        fp.statements.import_stream(stream, accounts["vcb"], file_name="s.csv",
                                    file_sha256="0" * 64, file_size=1)
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


def test_settlement_for_another_account_is_refused(fp, accounts) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError, match="the file is for account"):
        import_file(fp, VNPAY_XLSX, accounts["bidv"])
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


# -- concurrency ----------------------------------------------------------------------------------
def test_concurrent_imports_of_overlapping_files_store_each_line_once(fp, accounts) -> None:  # noqa: ANN001
    results, errors = [], []

    def run(path: Path) -> None:
        try:
            results.append(import_file(fp, path, accounts["vcb"])[1])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in (VCB_XLSX, VCB_CSV, VCB_XLSX)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.new for r in results) == 15 and counts(fp)["statement_lines"] == 15


# -- CLI ------------------------------------------------------------------------------------------
def cli(db_url: str, *args: str):  # noqa: ANN201
    return CliRunner().invoke(main, ["--db", db_url, "statements", *args])


def test_cli_import_json_and_list(fp, accounts, db_url) -> None:  # noqa: ANN001
    res = cli(db_url, "import", str(VCB_XLSX), "--account", str(accounts["vcb"]), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["format"], data["detected"], data["lines"], data["new"],
            data["duplicates"]) == ("vietcombank", True, 15, 15, 0)
    res = cli(db_url, "import", str(VCB_CSV), "--account", str(accounts["vcb"]),
              "--format", "vietcombank")
    assert res.exit_code == 0
    assert "read as 'vietcombank' (Vietcombank — sao kê tài khoản (Excel/CSV))" in res.stdout
    assert "15 lines: 0 new, 15 already stored" in res.stdout
    listed = json.loads(cli(db_url, "imports", "--json").stdout)["imports"]
    assert [r["lines_new"] for r in listed] == [0, 15]
    assert "vcb_2025-11-01_03.csv" in cli(db_url, "imports").stdout


def test_cli_refusal_exits_2_with_the_reason(fp, accounts, db_url, tmp_path) -> None:  # noqa: ANN001
    bad = vcb_csv(tmp_path / "bad.csv", [(datetime(2025, 11, 1, 9, tzinfo=VN_TZ), "R1", 1000,
                                          "C", "x")])
    bad.write_text(bad.read_text(encoding="utf-8").replace('"1,000"', "12.5OO"),
                   encoding="utf-8")
    res = cli(db_url, "import", str(bad), "--account", str(accounts["vcb"]))
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: bad.csv, row 4, column 'Số tiền ghi có': '12.5OO' is "
                                  "not an amount")
    res = cli(db_url, "import", str(bad), "--account", str(accounts["vcb"]), "--json")
    err = json.loads(res.stderr)
    assert (err["error"], err["line"], err["column"]) == ("ParseError", 4, "Số tiền ghi có")
    assert counts(fp) == dict.fromkeys(counts(fp), 0)


def test_cli_check_and_formats_need_no_database(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["statements", "check", str(VNPAY_CSV), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["transactions"] == 8
    res = CliRunner().invoke(main, ["statements", "formats", "--json"])
    names = [f["name"] for f in json.loads(res.stdout)["formats"]]
    assert {"vietcombank", "bidv", "vietinbank", "agribank", "mb", "techcombank", "mt940",
            "camt.053", "camt.054", "vnpay"} <= set(names)
    assert list(tmp_path.iterdir()) == []  # no feepay.db was created


# -- staging ------------------------------------------------------------------------------------
def test_failed_import_leaves_no_staging_behind(fp, accounts) -> None:  # noqa: ANN001
    def broken():
        yield Line(1, date(2025, 11, 1), 1000, "credit", memo="staged, then dropped")
        raise ParseError("'x' is not an amount", source="s.csv", line=2, column="Có")

    for _ in range(3):  # the pool hands the same connection back: its staging must be gone
        with pytest.raises(ParseError):
            fp.statements.import_stream(StatementStream(StatementInfo("s.csv", "t"), broken()),
                                        accounts["vcb"], file_name="s.csv",
                                        file_sha256="0" * 64, file_size=1)
    _, ok = import_file(fp, VCB_CSV, accounts["vcb"])
    assert (ok.lines, ok.new) == (15, 15)
    assert not any("staged" in r["memo_raw"] for r in fp.statements.lines(accounts["vcb"]))


def test_other_writers_are_not_blocked_while_a_file_is_read(fp, accounts) -> None:  # noqa: ANN001
    """The database is locked only while storing, not while a big file is read/checked."""
    reading, go_on = threading.Event(), threading.Event()

    def slow():
        yield Line(1, date(2025, 11, 1), 1000, "credit", memo="first")
        reading.set()
        assert go_on.wait(20), "the other writer never got through"
        yield Line(2, date(2025, 11, 1), 2000, "credit", memo="second")

    result = []
    worker = threading.Thread(target=lambda: result.append(fp.statements.import_stream(
        StatementStream(StatementInfo("slow.csv", "t"), slow()), accounts["vcb"],
        file_name="slow.csv", file_sha256="1" * 64, file_size=1)))
    worker.start()
    assert reading.wait(20)
    started = datetime.now()
    other = fp.accounts.register("40", "970422", "9990000000042", "DON VI KHAC")  # a write
    waited = (datetime.now() - started).total_seconds()
    go_on.set()
    worker.join(30)
    assert other.id and waited < 5
    assert result and result[0].new == 2


# -- the bulk path's memo scan agrees with the reference module -------------------------------
_CODE_BITS = st.sampled_from(["FP7K3MQ9XA4C", "fp 7k3m q9xa 4c", "FP7K3MQ9XA4D", "FP7K3M",
                              "FPFP", "Nộp phí ", "đ", "-", " ", "22", "FP", "Q9XA4C"])


@given(st.lists(st.one_of(_CODE_BITS, st.text(max_size=6)), max_size=8))
def test_codes_in_normalized_matches_find_in_text(parts: list[str]) -> None:
    """Normalising once and scanning the result (the import's hot path) finds exactly what
    find_in_text finds in the raw memo, for str and bytes input."""
    memo = "".join(parts)
    norm = normalize_memo(memo)
    assert codes_in_normalized(norm) == find_in_text(memo)
    assert codes_in_normalized(norm.encode()) == find_in_text(memo)
