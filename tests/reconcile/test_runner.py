"""The runner against real SQLite and PostgreSQL: load, match, store, move states, re-run."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select, text

from feepay.models import SettlementBatch, SettlementFile
from feepay.models import SettlementTxn as SettlementTxnModel
from feepay.money import VN_TZ
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow, ReconRunRow
from feepay.storage.tables_statements import StatementImportRow

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


def test_a_callback_an_earlier_days_mismatch_holds_waits_for_no_money(fp, world) -> None:  # noqa: ANN001
    """A callback paired with money an earlier day held (paid after cancellation) is not
    free on later days: no ``paid_no_money`` is raised for it once its grace is over."""
    a = world.ref()
    fp.references.cancel(a.code, "hồ sơ rút", actor="test")
    world.callback(a.code, 10_000, at(D1, 9))
    world.statement(D1, [(10_000, a.code, at(D1, 9, 1))])
    first = world.run(D1)
    (held,) = mismatches(fp, category="expired_or_cancelled")
    assert held.event_id is not None and held.amount == 10_000
    again = world.run(D1)                              # its own day's row claims nothing
    assert again.digest == first.digest
    assert mismatches(fp, category="expired_or_cancelled")[0].event_id == held.event_id
    later = world.run(D1 + timedelta(days=3))          # in the window, past the grace
    assert later.status == "balanced"
    assert mismatches(fp, category="paid_no_money") == []


def test_skip_done_is_the_schedulers_mode(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(10_000, "X", at(D1))])
    assert world.run(D1, trigger="scheduler", skip_done=True).status == "balanced"
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "skipped" and again.reason == "already reconciled"


def test_a_statement_imported_after_its_day_ran_is_run_again(fp, world) -> None:  # noqa: ANN001
    """The scheduler skips only days whose run saw what the statement now holds: lines
    imported late (a bank's file arriving a day after the night ran) are reconciled."""
    a = world.ref()
    world.statement(D1, [(7_000, "CHUYEN TIEN", at(D1, 8))])
    assert world.run(D1, trigger="scheduler", skip_done=True).lines == 1
    world.statement(D1, [(10_000, a.code, at(D1, 22, 30))])
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2
    assert (again.lines, again.statement_credits, again.matched) == (2, 17_000, 10_000)
    assert state(fp, a.code) == "settled"
    assert world.run(D1, trigger="scheduler", skip_done=True).status == "skipped"


def test_a_settlement_file_imported_after_its_day_ran_is_run_again(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(9_800, "VNPAY TT 20251201 LO VNP-LATE-0001", at(D1, 10))])
    first = world.run(D1, trigger="scheduler", skip_done=True)
    assert first.status == "balanced" and first.matched == 0
    world.settlement("VNP-LATE-0001", D1, [("T1", a.code, 10_000, 200)])
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2 and again.matched == 9_800
    assert world.run(D1, trigger="scheduler", skip_done=True).status == "skipped"


def test_a_settlement_file_still_committing_while_the_day_ran_is_not_missed(
        fp, world) -> None:  # noqa: ANN001
    """An import is stamped when its transaction starts. One that started before a run
    and committed after the run had read (PostgreSQL reads committed data per statement)
    carries an earlier time than the run: the run's fingerprint of the batches it read,
    not the times, says the day must run again."""
    a = world.ref()
    world.statement(D1, [(9_800, "VNPAY TT 20251201 LO VNP-RACE-0001", at(D1, 10))])
    first = world.run(D1, trigger="scheduler", skip_done=True)
    assert first.status == "balanced" and first.matched == 0
    world.settlement("VNP-RACE-0001", D1, [("T1", a.code, 10_000, 200)])
    with fp.db.session() as s:  # as if the import had begun before the run started
        started = s.scalar(select(ReconRunRow.started_at).where(
            ReconRunRow.id == first.run_id))
        s.execute(StatementImportRow.__table__.update().where(
            StatementImportRow.kind == "settlement").values(
            imported_at=started - timedelta(minutes=5)))
    assert not world.recon.is_done(world.account, D1)
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2 and again.matched == 9_800
    assert world.recon.is_done(world.account, D1)


def test_a_replaced_batch_makes_its_day_due_again(fp, world) -> None:  # noqa: ANN001
    """A corrected file rewrites the stored batch row in place (same id, new import):
    the day that read the old version is no longer up to date."""
    a, b = world.ref(), world.ref()
    world.statement(D1, [(9_800, "VNPAY TT 20251201 LO VNP-FIX-0001", at(D1, 10))])
    world.settlement("VNP-FIX-0001", D1, [("T1", a.code, 10_000, 200)])
    assert world.run(D1).matched == 9_800 and world.recon.is_done(world.account, D1)
    with fp.db.session() as s:
        imports_before = s.scalar(select(func.count()).select_from(StatementImportRow))
    world.fp.statements.import_settlement(
        SettlementFile(source="settle.csv", format="test", batches=(SettlementBatch(
            batch_id="VNP-FIX-0001", provider="vnpay", settled_on=D1, net_total=9_800,
            transactions=(SettlementTxnModel(line_no=1, provider_txn_id="T9",
                                             reference=b.code, gross=10_000, fee=200,
                                             net=9_800, batch_id="VNP-FIX-0001"),)),)),
        world.account, file_name="settle-fixed.csv", file_sha256="f" * 64, file_size=10,
        actor="kbnn.demo", replace_reason="VNPAY corrected the batch: T9, not T1")
    with fp.db.session() as s:
        assert s.scalar(select(func.count()).select_from(StatementImportRow)) == (
            imports_before + 1)
    assert not world.recon.is_done(world.account, D1)
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2
    assert state(fp, b.code) == "settled"


def test_an_unbalanced_run_is_not_done(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(10_000, "X", at(D1))])
    assert world.run(D1).status == "balanced"
    with fp.db.session() as s:  # as if the sum check had failed
        s.execute(ReconRunRow.__table__.update().values(status="unbalanced"))
    assert world.run(D1, trigger="scheduler", skip_done=True).attempt == 2


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


def test_a_line_without_a_time_was_paid_on_its_posting_day(fp, world) -> None:  # noqa: ANN001
    """Some bank exports give only a date: with no callback either, the reference was
    paid on the statement's posting day — not when the night's run happened to run."""
    a = world.ref()
    world.statement(D1, [(10_000, a.code)])
    assert world.run(D1).status == "balanced"
    with fp.db.session() as s:
        paid_at = s.scalar(select(ReferenceRow.paid_at).where(ReferenceRow.code == a.code))
    assert state(fp, a.code) == "settled"
    assert paid_at.astimezone(VN_TZ).date() == D1


def test_a_refund_inside_a_batch_is_recorded_against_its_reference(fp, world) -> None:  # noqa: ANN001
    """A gateway pays a refund back out of a batch: the credit is the payments' net minus
    the refund, the refund is a negative allocation to its reference, and the refunded
    reference keeps its state (the refund was decided earlier, elsewhere)."""
    from feepay.models import SettlementBatch, SettlementFile
    from feepay.models import SettlementTxn as Txn

    a, b, old = world.ref(), world.ref(), world.ref()
    txns = (Txn(line_no=1, provider_txn_id="T1", reference=a.code, gross=10_000, fee=200,
                net=9_800, batch_id="VNP-RF-0001"),
            Txn(line_no=2, provider_txn_id="T2", reference=b.code, gross=10_000, fee=200,
                net=9_800, batch_id="VNP-RF-0001"),
            Txn(line_no=3, provider_txn_id="T3", reference=old.code, gross=-10_000, fee=0,
                net=-10_000, batch_id="VNP-RF-0001", kind="refund"))
    batch = SettlementBatch(batch_id="VNP-RF-0001", provider="vnpay", settled_on=D1,
                            net_total=9_600, transactions=txns)
    fp.statements.import_settlement(SettlementFile(source="rf.csv", format="test",
                                                   batches=(batch,)), world.account,
                                    file_name="rf.csv", file_sha256="f" * 64, file_size=10)
    world.statement(D1, [(9_600, "VNPAY TT LO VNP-RF-0001", at(D1, 10))])
    out = world.run(D1)
    assert out.status == "balanced" and (out.matched, out.held) == (9_600, 0)
    with fp.db.session() as s:
        rows = sorted((m.rule, m.txn_id, m.amount) for m in s.scalars(select(ReconMatchRow)))
    assert rows == [("gateway", "T1", 9_800), ("gateway", "T2", 9_800),
                    ("refund", "T3", -10_000)]
    assert state(fp, a.code) == state(fp, b.code) == "settled"
    assert state(fp, old.code) == "issued"


def test_a_day_whose_last_attempt_failed_is_not_done(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(10_000, "X", at(D1))])
    assert world.run(D1).status == "balanced"
    world.recon._record_failure(world.account, D1, "manual", "t", at(D1, 23), RuntimeError("x"))
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 3


def test_a_link_made_after_the_days_last_run_makes_it_due(fp, world) -> None:  # noqa: ANN001
    """A link commits, then its re-run dies: the scheduler must still run the day."""
    from reconcile.resolution import Resolutions

    a = world.ref()
    world.statement(D1, [(10_000, "KHONG RO", at(D1, 9))])
    world.run(D1)
    res = Resolutions(fp)
    (m,) = res.list(category="unknown_reference")
    with fp.db.session() as s:  # the link as resolve() commits it, without the re-run
        row = s.get(ReconMismatchRow, m.id)
        res._apply(s, row, "link", "người nộp xác nhận", "kbnn.demo", a.code)
    again = world.run(D1, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.matched == 10_000
    assert state(fp, a.code) == "settled"


def test_ids_holding_a_nul_character_are_stored_whole(fp, world) -> None:  # noqa: ANN001
    """Two gateway transactions whose ids differ only after a NUL stay two mismatches
    with their ids whole: SQLite's JSON functions would end the text at the NUL, which
    the bulk upsert must not let merge them. Imports refuse a NUL now; a database filled
    before may hold one (made here by changing the stored ids)."""
    if fp.db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL text cannot hold NUL")
    world.statement(D1, [(14_700, "VNPAY TT 20251201 LO VNP-NUL-0001", at(D1, 10))])
    world.settlement("VNP-NUL-0001", D1, [("T~a", None, 10_000, 200),
                                          ("T~b", None, 5_000, 100)])
    with fp.db.engine.begin() as conn:
        conn.execute(text("UPDATE settlement_transactions "
                          "SET provider_txn_id = replace(provider_txn_id, '~', char(0))"))
    out = world.run(D1)
    assert out.status == "balanced" and out.held == 14_700
    held = [m for m in mismatches(fp) if m.amount]
    assert sorted(m.key[-3:] for m in held) == ["T\x00a", "T\x00b"]
    assert sorted(m.amount for m in held) == [4_900, 9_800]
