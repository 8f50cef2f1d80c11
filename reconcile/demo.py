"""One realistic day for the demo province, end to end: `feepay demo`'s main job.

:func:`run_demo_day` plays a business day (01/12/2025 by default) on a FeePay database:

1. **references issued** for dossiers through the day (department fees, a commune fee);
2. **citizens pay**: most by VietQR transfer into the unit's account, with memos mangled
   the way bank apps do (upper/lower case, spaces inside the code, text glued on, MoMo
   relays, diacritics); some through the VNPAY gateway; a few do not pay;
3. **callbacks** arrive through the real callback pipeline (inbox → signature → record):
   SePay bank pushes for transfers, VNPAY IPNs for gateway payments — some are lost, some
   delivered twice, and one VNPAY IPN is forged (wrong signature: refused, changes nothing);
4. **files**: the department account's VietinBank statement (XLSX) and VNPAY's settlement
   file (CSV, two batches) are written to ``out_dir`` and imported through the statement
   adapters — exactly as a treasury clerk would;
5. **the nightly reconciliation** runs for every account;
6. **reports** (JSON, CSV, XLSX) are written to ``out_dir/reports``.

Every mismatch category appears at least once, on purpose: underpaid, overpaid,
duplicate, a typo'd code (suggested, not matched), a transfer without a code, money into
the wrong unit's account, a cancelled and an expired reference paid anyway, an ambiguous
transfer, a callback whose money never came, lost callbacks, a VNPAY batch credited short.
Everything is drawn from ``random.Random(seed)``: the same seed gives the same day.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feepay.exceptions import ValidationError
from feepay.money import VN_TZ, format_date, format_vnd
from feepay.reference import ALPHABET
from reconcile.models import CATEGORY_LABELS, Category

if TYPE_CHECKING:
    from feepay.api import FeePay
    from feepay.models import PaymentReference

DEMO_DAY = date(2025, 12, 1)
MIN_DOSSIERS = 15
SEPAY_KEY = "demo-sepay-api-key-0123456789"
VNPAY_SECRET = "DEMOVNPAYHASHSECRET0123456789AB"
VNPAY_TMN = "FEEPAYDM"
BASKETS = (["P-CT-01", "P-CT-02"], ["P-TD-01"], ["LP-HT-01"], ["LP-DD-01", "P-CT-01"],
           ["LP-HT-02", "LP-HT-02"], ["P-CT-02"])
NAMES = ("NGUYEN VAN A", "TRAN THI B", "LE VAN C", "PHAM THI D", "HOANG VAN E", "VU THI G")


@dataclass
class Pay:
    """One payment the day will see."""

    ref: PaymentReference | None
    amount: int
    memo: str
    at: datetime
    via: str = "vietqr"          # vietqr | vnpay
    callback: str = "sent"       # sent | lost | twice
    on_statement: bool = True    # False: posted by the bank the next day
    role: str = "clean"
    txn: str = ""


@dataclass
class Day:
    fp: FeePay
    day: date
    rng: random.Random
    out_dir: Path
    department: str = ""
    commune: str = ""
    account: int = 0
    account_number: str = ""
    pays: list[Pay] = field(default_factory=list)
    refs: list[PaymentReference] = field(default_factory=list)
    callbacks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("sent", "lost", "duplicated", "recorded", "refused"), 0))
    forged_refused: bool = False
    seq: int = 0

    def at(self, hh: int, mm: int = 0, ss: int = 0, days: int = 0) -> datetime:
        return datetime.combine(self.day + timedelta(days=days), time(hh, mm, ss), VN_TZ)

    def next_id(self) -> int:
        self.seq += 1
        return 25_335_000_000 + self.seq


def run_demo_day(fp: FeePay, *, seed: int, dossiers: int, out_dir: Path,
                 day: date = DEMO_DAY) -> dict[str, Any]:
    """Play one day on ``fp`` (seeding the demo province first if the database is empty).

    Returns a JSON-able summary; :func:`format_summary` prints it for people.

    Raises:
        ValidationError: fewer than :data:`MIN_DOSSIERS` dossiers (every category needs
            a few references to show itself).
    """
    if dossiers < MIN_DOSSIERS:
        raise ValidationError(f"the demo day needs at least {MIN_DOSSIERS} dossiers",
                              field="dossiers")
    out_dir.mkdir(parents=True, exist_ok=True)
    d = Day(fp, day, random.Random(seed), out_dir)
    _setup(d, seed)
    _issue_and_plan(d, dossiers)
    _send_callbacks(d)
    files, imports = _write_and_import_files(d)
    from reconcile.runner import Reconciler

    outcomes = Reconciler(fp).run(day, trigger="demo", actor="demo")
    from reconcile.reports import build_report, write_all

    written = write_all(build_report(fp, day), out_dir / "reports")
    return _summary(d, seed, files, imports, outcomes, written)


# --------------------------------------------------------------------------- set-up


def _setup(d: Day, seed: int) -> None:
    from feepay.demo_data import DEPARTMENT
    from feepay.demo_data import seed as seed_province

    fp = d.fp
    if not fp.accounts.list(state="active"):
        seed_province(fp, seed)
    accounts = {a.unit_code: a.id for a in fp.accounts.list(state="active")}
    d.department = DEPARTMENT
    d.commune = sorted(u for u in accounts if u != DEPARTMENT)[0]
    d.account = accounts[DEPARTMENT]
    d.account_number = fp.accounts.full_number(d.account)
    names = {c.name for c in fp.channels.list()}
    if "demo-sepay" not in names:
        fp.channels.add("demo-sepay", "sepay", secrets={"api_key": SEPAY_KEY},
                        account_id=d.account, actor="demo")
    if "demo-vnpay" not in names:
        fp.channels.add("demo-vnpay", "vnpay", secrets={"hash_secret": VNPAY_SECRET},
                        account_id=d.account, merchant_id=VNPAY_TMN, actor="demo")


def _issue(d: Day, items: list[str], when: datetime, unit: str | None = None):  # noqa: ANN202
    d.seq += 1
    ref = d.fp.references.issue(f"000.00.40.H-{d.day:%y%m%d}-{d.seq:04d}",
                                unit or d.department, items, now=when, actor="demo")
    d.refs.append(ref)
    return ref


# --------------------------------------------------------------------------- the plan


def _issue_and_plan(d: Day, dossiers: int) -> None:
    rng = d.rng
    refs = []
    for i in range(dossiers):
        when = d.at(7, 30) + timedelta(minutes=int(i * 540 / dossiers))
        refs.append(_issue(d, list(rng.choice(BASKETS)), when))
    _special_cases(d, refs)
    rest = refs[9:]
    rng.shuffle(rest)
    n_vnpay = max(4, round(len(rest) * 0.2))
    vnpay, rest = rest[:n_vnpay], rest[n_vnpay:]
    n_unpaid = max(1, round(len(rest) * 0.12))
    unpaid, vietqr = rest[:n_unpaid], rest[n_unpaid:]
    for ref in vietqr:
        d.pays.append(Pay(ref, ref.amount_due, mangle(ref.code, rng), _after(d, ref)))
    for i, ref in enumerate(vnpay):
        callback = "lost" if i == 0 else "twice" if i == 1 else "sent"
        d.pays.append(Pay(ref, ref.amount_due, f"Thanh toan ho so {ref.dossier_code}",
                          _after(d, ref), via="vnpay", callback=callback,
                          txn=str(14_000_000 + rng.randrange(10**6))))
    _forge(d, unpaid[0])


def _after(d: Day, ref: PaymentReference) -> datetime:
    """A payment time some minutes after issue, before 21:00."""
    t = ref.issued_at.astimezone(VN_TZ) + timedelta(minutes=d.rng.randrange(3, 240))
    return min(t, d.at(20, 59))


def _special_cases(d: Day, refs: list[PaymentReference]) -> None:
    """One of each mismatch, deterministic: refs[0..8] plus three extra references."""
    rng, name = d.rng, lambda: rng.choice(NAMES)
    under, over, dup, typo, cancel, amb1, amb2, lost, late = refs[:9]
    d.pays += [
        Pay(under, under.amount_due // 2, f"{under.code} {name()} nop lan 1", _after(d, under),
            role="underpaid"),
        Pay(over, over.amount_due + 10_000, f"IBFT {over.code} {name()}", _after(d, over),
            role="overpaid"),
        Pay(dup, dup.amount_due, f"MBVCB.{rng.randrange(10**9)}.{dup.code}.{name()} chuyen tien",
            _after(d, dup), role="duplicate"),
        Pay(dup, dup.amount_due, f"{dup.code} chuyen lai", _after(d, dup) + timedelta(hours=1),
            role="duplicate"),
        Pay(typo, typo.amount_due, f"NOP LE PHI {typo_of(typo.code)} {name()}",
            _after(d, typo), role="near_miss"),
        Pay(amb1, amb1.amount_due, f"NOP PHI {amb1.code} {amb2.code}", _after(d, amb2),
            role="ambiguous"),
        Pay(lost, lost.amount_due, mangle(lost.code, rng), _after(d, lost), callback="lost",
            role="lost_callback"),
        Pay(late, late.amount_due, f"{late.code} {name()}", d.at(22, 40), on_statement=False,
            role="late_evening"),
        Pay(None, 150_000, f"{name()} CHUYEN TIEN HO SO DAT DAI", d.at(15, 12),
            role="no_code"),
    ]
    d.fp.references.cancel(cancel.code, "công dân rút hồ sơ", actor="demo")
    d.pays.append(Pay(cancel, cancel.amount_due, f"{cancel.code} {name()}", d.at(16, 5),
                      role="cancelled"))
    old = _issue(d, ["LP-HT-01"], d.at(9, days=-9))          # expired two days ago
    d.pays.append(Pay(old, old.amount_due, f"nop phi {old.code.lower()}", d.at(9, 45),
                      role="expired"))
    wrong = _issue(d, ["LP-HT-01"], d.at(8), unit=d.commune)  # a commune's reference
    d.pays.append(Pay(wrong, wrong.amount_due, f"{wrong.code} {name()}", d.at(11, 20),
                      role="wrong_account"))
    ghost = _issue(d, ["P-TD-01"], d.at(10, days=-4))         # VNPAY said paid, no money
    d.pays.append(Pay(ghost, ghost.amount_due, "Thanh toan ho so", d.at(15, days=-3),
                      via="vnpay", on_statement=False, role="paid_no_money",
                      txn=str(13_900_000 + rng.randrange(10**5))))


def typo_of(code: str) -> str:
    """The code with one character mistyped (its check then fails)."""
    i = 6
    sub = ALPHABET[(ALPHABET.index(code[i]) + 7) % len(ALPHABET)]
    return code[:i] + sub + code[i + 1:]


def mangle(code: str, rng: random.Random) -> str:
    """A memo as a bank app delivers it (shapes from docs/domain: VCB, IBFT, MoMo…)."""
    name = rng.choice(NAMES)
    spaced = code[:6] + " " + code[6:]
    styles = (
        f"{code}",
        f"MBVCB.{rng.randrange(10**10)}.{rng.randrange(10**6)}.{name} chuyen tien.CT tu "
        f"{rng.randrange(10**12)} {name} toi 9123 {code}",
        f"IBFT {spaced.lower()} {name}",
        f"CT DEN:{rng.randrange(10**12)} {code.lower()}-CTLNhanh",
        f"{rng.randrange(10**12)}-{name} chuyen tien qua MoMo-{code}-MOMO{rng.randrange(10**12)}"
        "MOMO",
        f"NOP{code}LEPHI",
        f"Nộp phí hồ sơ {spaced} - {name.title()}",
    )
    return rng.choice(styles)


def _forge(d: Day, ref: PaymentReference) -> None:
    """A VNPAY IPN for an unpaid reference, signed with the wrong secret."""
    from adapters.pipeline import CallbackPipeline
    from adapters.testing import vnpay_ipn

    call = vnpay_ipn("NOT-THE-SECRET-0000000000000000", txn_ref=ref.code, amount=ref.amount_due,
                     txn_no="99999999", tmn_code=VNPAY_TMN, pay_date=d.at(13, 13))
    outcome = CallbackPipeline(d.fp).handle("vnpay", "demo-vnpay", call.raw(
        received_at=d.at(13, 13, 5), path="/callbacks/vnpay/demo-vnpay"))
    d.forged_refused = outcome.state.value == "rejected" and \
        d.fp.references.get(ref.code).state.value == "issued"


# --------------------------------------------------------------------------- callbacks


def _send_callbacks(d: Day) -> None:
    from adapters.pipeline import CallbackPipeline
    from adapters.testing import sepay_webhook, vnpay_ipn

    pipeline = CallbackPipeline(d.fp)
    for p in sorted(d.pays, key=lambda p: p.at):
        p.txn = p.txn or str(d.next_id())
        if p.callback == "lost" or p.role == "no_code":
            d.callbacks["lost"] += p.role != "no_code"
            continue
        if p.via == "vnpay":
            call = vnpay_ipn(VNPAY_SECRET, txn_ref=p.ref.code, amount=p.amount, txn_no=p.txn,
                             tmn_code=VNPAY_TMN, pay_date=p.at)
            adapter, channel = "vnpay", "demo-vnpay"
        else:
            call = sepay_webhook(txn_id=int(p.txn), amount=p.amount, content=p.memo,
                                 api_key=SEPAY_KEY, account_number=d.account_number, when=p.at)
            adapter, channel = "sepay", "demo-sepay"
        for _ in range(2 if p.callback == "twice" else 1):
            outcome = pipeline.handle(adapter, channel, call.raw(
                received_at=p.at + timedelta(seconds=4), path=f"/callbacks/{adapter}/{channel}"))
            d.callbacks["sent"] += 1
            d.callbacks["recorded"] += outcome.event_id is not None and not outcome.duplicate
            d.callbacks["refused"] += outcome.state.value == "rejected"
        d.callbacks["duplicated"] += p.callback == "twice"


# --------------------------------------------------------------------------- files


def _write_and_import_files(d: Day) -> tuple[dict[str, str], dict[str, Any]]:
    from adapters.statements.registry import import_file

    settlement, credits = _settlement_csv(d)
    statement = _statement_xlsx(d, credits)
    imports = {}
    for kind, path in (("settlement", settlement), ("statement", statement)):
        _adapter, result = import_file(d.fp, path, d.account, actor="demo")
        imports[kind] = {"format": result.format, "lines": result.lines, "new": result.new,
                         "batches": result.batches}
    return {"statement": str(statement), "settlement": str(settlement)}, imports


def _settlement_csv(d: Day) -> tuple[Path, list[tuple[str, int, datetime]]]:
    """VNPAY's file of the day's gateway payments, in two batches (morning, afternoon).
    Returns the bank credits VNPAY makes: batch B arrives 5.500 ₫ short."""
    rows: list[list[object]] = [
        ["CỔNG THANH TOÁN VNPAY"], ["BẢNG KÊ ĐỐI SOÁT GIAO DỊCH / SETTLEMENT REPORT"],
        ["Mã website (TmnCode):", VNPAY_TMN], ["Tài khoản nhận:", d.account_number], [],
        ["STT", "Mã GD VNPAY", "Mã GD merchant", "Thời gian giao dịch", "Loại giao dịch",
         "Số tiền", "Phí", "Thực nhận", "Ngày thanh toán", "Mã lô"]]
    nets: dict[str, int] = {}
    gateway = sorted((p for p in d.pays if p.via == "vnpay" and p.on_statement),
                     key=lambda p: p.at)
    half = (len(gateway) + 1) // 2
    for i, p in enumerate(gateway, start=1):
        fee = max(1_100, p.amount * 11 // 1000)
        batch = f"VNPAY-{d.day:%Y%m%d}-{'A' if i <= half else 'B'}"
        nets[batch] = nets.get(batch, 0) + p.amount - fee
        rows.append([i, p.txn, p.ref.code, p.at.strftime("%d/%m/%Y %H:%M:%S"), "Thanh toán",
                     _dots(p.amount), _dots(fee), _dots(p.amount - fee),
                     d.day.strftime("%d/%m/%Y"), batch])
    rows += [["Tổng cộng"], ["Tổng tiền thanh toán:", _dots(sum(nets.values()))]]
    path = d.out_dir / f"vnpay_settlement_{d.day:%Y-%m-%d}.csv"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))
    credits = [(b, net - (5_500 if b.endswith("B") else 0), d.at(17 if b.endswith("A") else 23))
               for b, net in sorted(nets.items())]
    return path, credits


def _dots(amount: int) -> str:
    return f"{amount:,}".replace(",", ".")


def _statement_xlsx(d: Day, credits: list[tuple[str, int, datetime]]) -> Path:
    """The department account's VietinBank transaction history for the day (XLSX)."""
    from openpyxl import Workbook

    lines = [(p.at, p.txn, p.memo, 0, p.amount) for p in d.pays
             if p.via == "vietqr" and p.on_statement]
    lines += [(min(at, d.at(23, 50)), f"{d.next_id()}", f"VNPAY TT GD NGAY {d.day:%d/%m/%Y} "
               f"LO {batch} TMN {VNPAY_TMN}", 0, amount) for batch, amount, at in credits]
    lines.append((d.at(23, 55), f"{d.next_id()}", "PHI QUAN LY TAI KHOAN THANG 11", 11_000, 0))
    lines.sort()
    opening = 50_000_000
    wb = Workbook()
    ws = wb.active
    ws.title = "Lich su giao dich"
    for row in (["NGÂN HÀNG TMCP CÔNG THƯƠNG VIỆT NAM - VIETINBANK"],
                ["LỊCH SỬ GIAO DỊCH - TRANSACTION HISTORY"],
                ["Số tài khoản / Account No:", d.account_number],
                [f"Từ ngày / From date: {format_date(d.day)} - Đến ngày / To date: "
                 f"{format_date(d.day)}"],
                ["SỐ DƯ ĐẦU KỲ / OPENING BALANCE:", f"{opening:,}"], [],
                ["STT", "Ngày hạch toán / Accounting date", "Số giao dịch / Transaction number",
                 "Mô tả giao dịch / Transaction description", "Nợ / Debit", "Có / Credit",
                 "Số dư TK / Account balance"]):
        ws.append(row)
    balance = opening
    for i, (at, txn, memo, debit, credit) in enumerate(lines, start=1):
        balance += credit - debit
        ws.append([i, at.strftime("%d/%m/%Y %H:%M:%S"), f"FT{int(txn):014d}", memo,
                   f"{debit:,}" if debit else "", f"{credit:,}" if credit else "",
                   f"{balance:,}"])
    ws.append([])
    ws.append(["SỐ DƯ CUỐI KỲ / CLOSING BALANCE:", f"{balance:,}"])
    path = d.out_dir / f"vietinbank_{d.day:%Y-%m-%d}.xlsx"
    wb.save(path)
    return path


# --------------------------------------------------------------------------- summary


def _summary(d: Day, seed: int, files: dict[str, str], imports: dict[str, Any],
             outcomes: list, written: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    from reconcile.resolution import Resolutions

    mismatches = Resolutions(d.fp).list(status=None, day=d.day, limit=100_000)
    mismatches.sort(key=lambda m: (not m.suggested, m.id))  # a suggestion makes a good example
    by_cat: dict[str, dict[str, Any]] = {}
    for m in mismatches:
        c = by_cat.setdefault(m.category, {"label": CATEGORY_LABELS[Category(m.category)][0],
                                           "count": 0, "amount": 0, "example": _example(m)})
        c["count"] += 1
        c["amount"] += m.amount
    ran = [o for o in outcomes if o.status != "skipped"]
    return {
        "day": d.day.isoformat(), "seed": seed,
        "database": d.fp.db.engine.url.render_as_string(hide_password=True),
        "references_issued": len(d.refs),
        "amount_issued": sum(r.amount_due for r in d.refs),
        "payments": {"vietqr": sum(p.via == "vietqr" for p in d.pays),
                     "vnpay": sum(p.via == "vnpay" for p in d.pays),
                     "posted_next_day": sum(p.role == "late_evening" for p in d.pays)},
        "callbacks": {**d.callbacks, "forged_refused": d.forged_refused},
        "files": files, "imports": imports,
        "reconciliation": {
            "accounts": len(ran),
            "balanced": all(o.status == "balanced" for o in ran),
            "statement_credits": sum(o.statement_credits for o in ran),
            "matched": sum(o.matched for o in ran), "held": sum(o.held for o in ran),
            "matches": sum(o.matches for o in ran), "by_rule": _rules(d),
            "mismatches": {k: by_cat[k] for k in sorted(by_cat)},
            "runs": [o.as_dict() for o in ran if o.lines or o.mismatches]},
        "reports": {"json": str(written["json"]), "xlsx": str(written["xlsx"]),
                    "csv": [str(p) for p in written["csv"]]},
    }


def _rules(d: Day) -> dict[str, int]:
    from sqlalchemy import func, select

    from feepay.storage.tables_reconcile import ReconMatchRow as M

    with d.fp.db.session() as s:
        return dict(s.execute(select(M.rule, func.count(func.distinct(M.match_key)))
                              .where(M.day == d.day).group_by(M.rule).order_by(M.rule)).all())


def _example(m) -> dict[str, Any]:  # noqa: ANN001 - MismatchView
    out: dict[str, Any] = {"id": m.id, "key": m.key, "amount": m.amount}
    if m.reference:
        out["reference"] = m.reference
    if m.suggested:
        out["suggested"] = list(m.suggested)
    if m.evidence.get("memo"):
        out["memo"] = m.evidence["memo"]
    if m.expected_amount is not None:
        out["expected_amount"] = m.expected_amount
    return out


def format_summary(s: dict[str, Any]) -> str:
    """The summary for people: Vietnamese first, English after the slash."""
    r, cb = s["reconciliation"], s["callbacks"]
    out = [f"Ngày {format_date(date.fromisoformat(s['day']))} (seed {s['seed']}) — "
           f"{s['database']}",
           f"  Mã thanh toán phát hành / references issued: {s['references_issued']} "
           f"({format_vnd(s['amount_issued'])})",
           f"  Thanh toán / payments: {s['payments']['vietqr']} chuyển khoản VietQR, "
           f"{s['payments']['vnpay']} qua VNPAY, {s['payments']['posted_next_day']} ghi sổ "
           "ngày sau / posted next day",
           f"  Thông báo / callbacks: {cb['sent']} gửi, {cb['lost']} thất lạc / lost, "
           f"{cb['duplicated']} gửi trùng / duplicated, giả mạo / forged: "
           f"{'bị từ chối / refused' if cb['forged_refused'] else 'NOT REFUSED'}",
           f"  Tệp / files: {s['files']['statement']}, {s['files']['settlement']}",
           "",
           f"Đối soát / reconciliation: {r['accounts']} tài khoản / accounts — "
           f"{'cân khớp / balanced' if r['balanced'] else 'KHÔNG CÂN / UNBALANCED'}",
           f"  Ghi có sao kê / statement credits {format_vnd(r['statement_credits'])} = "
           f"khớp / matched {format_vnd(r['matched'])} + treo / held {format_vnd(r['held'])}",
           f"  Khớp / matches: {r['matches']} ("
           + ", ".join(f"{rule} {n}" for rule, n in r["by_rule"].items()) + ")",
           "  Chênh lệch / mismatches:"]
    for cat, c in r["mismatches"].items():
        ex = c["example"]
        detail = ", ".join(f"{k} {v}" for k, v in ex.items()
                           if k in ("reference", "suggested", "memo"))
        out.append(f"    {c['label']} ({cat}): {c['count']}, {format_vnd(c['amount'])}"
                   f" — ví dụ / e.g. #{ex['id']}{': ' + detail if detail else ''}")
    out += ["", f"Báo cáo / reports: {s['reports']['xlsx']}, {s['reports']['json']} "
            f"(+ {len(s['reports']['csv'])} CSV)"]
    return "\n".join(out)
