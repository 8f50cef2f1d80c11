"""Reports: issued/paid/settled per unit, the phí split, mismatch ages, and the files."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, time

from openpyxl import load_workbook

from feepay.money import VN_TZ
from reconcile.reports import build_report, split_retention, write_all

D1 = date(2025, 12, 1)


def at(hh: int, day: date = D1) -> datetime:
    return datetime.combine(day, time(hh), VN_TZ)


def test_report_figures_and_files(fp, world, tmp_path) -> None:  # noqa: ANN001
    world.issued_at = at(8)
    a = world.ref(["P-CT-02", "LP-HT-01"])   # 10.000 phí (90 % kept) + 8.000 lệ phí
    b = world.ref(["P-TD-01"])               # 500.000 phí (30 % kept)
    world.ref(["P-CT-01"])                   # issued, never paid
    world.callback(a.code, 18_000, at(9))
    world.statement(D1, [(18_000, a.code, at(9)), (500_000, b.code, at(10)),
                         (1_234_567, "KHONG RO", at(11))])
    world.run(D1)
    report = build_report(fp, D1, as_of=date(2025, 12, 9))
    dept = world.demo.department
    (summary,) = [r for r in report.summary if r["unit"] == dept]
    assert (summary["issued"], summary["issued_amount"]) == (3, 520_000)
    assert (summary["settled"], summary["settled_amount"]) == (2, 518_000)
    assert summary["paid"] == 2 and summary["received"] == 518_000  # b: paid, no callback
    fees = {r["fee_code"]: (r["amount"], r["retained"], r["budget"]) for r in report.fees}
    assert fees == {"P-CT-02": (10_000, 9_000, 1_000), "LP-HT-01": (8_000, 0, 8_000),
                    "P-TD-01": (500_000, 150_000, 350_000)}
    (unknown,) = [r for r in report.mismatches if r["category"] == "unknown_reference"]
    assert unknown["open"] == 1 and unknown["amount"] == 1_234_567
    assert unknown["age_8_30"] == 1 and unknown["age_0_1"] == 0   # 8 days old on 09/12
    assert report.runs[0]["status"] == "balanced"

    files = write_all(report, tmp_path)
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["fees"][0]["unit"] == dept and "Báo cáo" in data["title"]
    wb = load_workbook(files["xlsx"])
    assert wb.sheetnames == ["Tổng hợp", "Phí - lệ phí", "Chênh lệch", "Nộp nhầm tài khoản",
                             "Đối soát"]
    ws = wb["Phí - lệ phí"]
    headers = [c.value for c in ws[2]]
    assert headers[headers.index("Số tiền thu")] == "Số tiền thu"
    assert {"Đơn vị được để lại", "Nộp ngân sách"} <= set(headers)
    money = ws.cell(row=3, column=headers.index("Số tiền thu") + 1)
    assert isinstance(money.value, int) and money.number_format == "#,##0"
    rate, code = headers.index("Tỷ lệ để lại (%)"), headers.index("Mã khoản thu")
    rates = {r[code]: r[rate] for r in ws.iter_rows(min_row=3, values_only=True)}
    assert rates == {"P-CT-02": 90, "LP-HT-01": 0, "P-TD-01": 30}   # numbers, not text
    assert data["fees"][0]["retention_pct"] in ("90", "0", "30")    # JSON keeps the text
    held = {r[2]: r for r in wb["Chênh lệch"].iter_rows(min_row=3, values_only=True)}
    assert held["unknown_reference"][5] == 1_234_567
    with (tmp_path / "bao-cao-fees.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "Mã đơn vị" and len(rows) == 4


def test_split_always_adds_up() -> None:
    for amount in (1, 999, 10_000, 1_234_567):
        for bp in (0, 1, 3333, 9000, 10_000):
            kept, budget = split_retention(amount, "phi", bp)
            assert kept + budget == amount and 0 <= kept <= amount
    assert split_retention(8_000, "le_phi", 0) == (0, 8_000)


def test_report_for_one_unit(fp, world) -> None:  # noqa: ANN001
    commune = world.demo.communes[0]
    r = world.ref(["LP-HT-01"], unit=commune)
    world.statement(D1, [(8_000, r.code, at(9))], account=world.demo.accounts[commune])
    world.recon.run(D1)
    report = build_report(fp, D1, unit=commune)
    assert [row["unit"] for row in report.summary] == [commune]
    assert [row["unit"] for row in report.runs] == [commune]


def test_money_paid_into_another_units_account_shows_in_both_reports(fp, world) -> None:  # noqa: ANN001
    """The holding unit sees a wrong_account mismatch; the unit owed the money sees it
    under *misrouted*, with who holds it — each counted once in a province's report."""
    commune = world.demo.communes[0]
    r = world.ref(["LP-HT-01"], unit=commune)            # the commune's own reference
    world.statement(D1, [(8_000, r.code, at(9))])        # paid into the department's account
    world.run(D1)
    dept = world.demo.department
    owed = build_report(fp, D1, unit=commune)
    assert owed.mismatches == []
    (row,) = owed.misrouted
    assert (row["unit"], row["held_by"], row["open"], row["amount"], row["oldest_day"]) == (
        commune, dept, 1, 8_000, D1)
    holder = build_report(fp, D1, unit=dept)
    assert [(m["category"], m["amount"]) for m in holder.mismatches] == [("wrong_account", 8_000)]
    assert holder.misrouted == []
    province = build_report(fp, D1)
    assert sum(m["amount"] for m in province.mismatches) == 8_000
    assert [m["held_by"] for m in province.misrouted] == [dept]
