"""The runner against real SQLite and PostgreSQL: load, match, store, move states, re-run."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import func, select

from feepay.money import VN_TZ
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow, ReconRunRow

D1 = date(2025, 12, 1)
D2 = date(2025, 12, 2)


def at(day: date, hh: int = 9, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), VN_TZ)


def state(fp, code: str) -> str:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == code))


def mismatches(fp, **where) -> list[ReconMismatchRow]:  # noqa: ANN001, ANN003
    with fp.db.session() as s:
        q = select(ReconMismatchRow).order_by(ReconMismatchRow.key)
        for k, v in where.items():
            q = q.where(getattr(ReconMismatchRow, k) == v)
        return list(s.scalars(q))


def test_day_end_to_end(fp, world) -> None:  # noqa: ANN001
    a, b, c, d = (world.ref() for _ in range(4))  # 10.000 each
    world.callback(a.code, 10_000, at(D1, 9))
    world.statement(D1, [(10_000, f"MBVCB.1 {a.code.lower()} NGUYEN VAN A", at(D1, 9, 1)),
                         (10_000, f"CK {b.code}", at(D1, 10)),          # no callback
                         (4_000, f"{c.code} lan 1", at(D1, 11)),         # underpaid
                         (7_000, "CHUYEN TIEN KHONG NOI DUNG", at(D1, 12))])
    out = world.run(D1)
    assert out.status == "balanced" and out.statement_credits == 31_000
    assert (out.matched, out.held) == (20_000, 11_000)
    assert state(fp, a.code) == "settled" and state(fp, b.code) == "settled"
    assert state(fp, c.code) == "partially_paid" and state(fp, d.code) == "issued"
    cats = sorted(m.category for m in mismatches(fp))
    assert cats == ["money_no_callback", "underpaid", "unknown_reference"]
    # next day: the rest of c arrives; yesterday's underpaid is cleared
    world.statement(D2, [(6_000, f"{c.code} lan 2", at(D2, 8))])
    out2 = world.run(D2)
    assert out2.status == "balanced" and out2.matched == 6_000
    assert state(fp, c.code) == "settled"
    (under,) = mismatches(fp, category="underpaid")
    assert under.status == "cleared" and under.cleared_day == D2


def test_rerun_is_idempotent_and_keeps_resolutions(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, "NO CODE HERE", at(D1, 9)), (10_000, a.code, at(D1, 10))])
    first = world.run(D1)
    (unknown,) = mismatches(fp, category="unknown_reference")
    with fp.db.session() as s:
        row = s.get(ReconMismatchRow, unknown.id)
        row.status, row.resolution, row.resolved_by = "resolved", "refund_due", "kbnn.demo"
    second = world.run(D1)
    assert second.digest == first.digest and second.attempt == 2
    (again,) = mismatches(fp, category="unknown_reference")
    assert again.id == unknown.id and again.status == "resolved"
    assert again.resolution == "refund_due" and again.run_id == second.run_id
    with fp.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ReconMatchRow)) == 1
        assert s.scalar(select(func.count()).select_from(ReconRunRow)) == 2


def test_paid_no_money_then_money_turns_up(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.callback(a.code, 10_000, at(date(2025, 11, 28), 15))
    world.run(D1)                                   # 28/11 + 2 days grace <= 01/12
    (pnm,) = mismatches(fp, category="paid_no_money")
    assert pnm.status == "open" and state(fp, a.code) == "paid"
    world.statement(D2, [(10_000, a.code, at(D2, 8))])
    world.run(D2)
    assert state(fp, a.code) == "settled"
    (pnm,) = mismatches(fp, category="paid_no_money")
    assert pnm.status == "cleared"


def test_skip_done_is_the_schedulers_mode(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(10_000, "X", at(D1))])
    assert world.run(D1, trigger="scheduler", skip_done=True).status == "balanced"
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "skipped" and again.reason == "already reconciled"


def test_no_callback_notices_where_no_callback_can_come(fp, world) -> None:  # noqa: ANN001
    """An account no channel serves and that never got a callback learns every payment
    from the statement: settled, but no money_no_callback per payment."""
    a = world.ref()
    world.statement(D1, [(10_000, a.code, at(D1, 9))])
    out = world.run(D1)
    assert out.status == "balanced" and out.matched == 10_000
    assert state(fp, a.code) == "settled" and mismatches(fp) == []


def test_debits_are_not_reconciled_and_late_lines_clear_nothing(fp, world) -> None:  # noqa: ANN001
    from feepay.statements import DEBIT, Line, StatementInfo, StatementStream

    lines = iter([Line(1, D1, 11_000, DEBIT, at(D1, 23), None, "PHI QUAN LY TK")])
    fp.statements.import_stream(StatementStream(StatementInfo(source="d.csv", format="t"),
                                                lines), world.account, file_name="d.csv",
                                file_sha256="d" * 64, file_size=1)
    out = world.run(D1)
    assert (out.statement_credits, out.lines, out.status) == (0, 0, "balanced")
