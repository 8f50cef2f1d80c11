"""Days an earlier day's run made stale, and files imported late: the nightly job runs them,
oldest first, in the same night. Real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow, ReconStaleDayRow
from feepay.storage.tables_statements import SettlementTxnRow, StatementImportRow
from reconcile.scheduler import nightly
from tests.reconcile.conftest import World, at

D1 = date(2025, 12, 1)
REASON = "VNPAY gửi lại file đối soát: giao dịch T1 là của hồ sơ khác"


def state(fp, code: str) -> str:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == code))


def marks(fp) -> int:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(func.count()).select_from(ReconStaleDayRow))


def open_mismatches(fp, code: str) -> list[tuple[date, str]]:  # noqa: ANN001
    X = ReconMismatchRow
    with fp.db.session() as s:
        return sorted(s.execute(select(X.day, X.category).where(
            X.reference_code == code, X.status.in_(("open", "carried_over")))).tuples())


def matched_days(fp, code: str) -> list[date]:  # noqa: ANN001
    M, R = ReconMatchRow, ReferenceRow
    with fp.db.session() as s:
        return sorted(s.scalars(select(M.day).join(R, R.id == M.reference_id).where(
            R.code == code, M.amount > 0)))


def paid_parts(fp, code: str) -> list[tuple[str | None, int]]:  # noqa: ANN001
    M, R = ReconMatchRow, ReferenceRow
    with fp.db.session() as s:
        return s.execute(select(M.txn_id, M.amount).join(R, R.id == M.reference_id).where(
            R.code == code).order_by(M.amount)).tuples().all()


def batch(world: World, batch_id: str, settled_on: date, txns: list[tuple[str, str]],
          name: str, reason: str | None = None, gross: int = 10_000) -> None:
    """A VNPAY batch settled on ``settled_on``; txns: (provider txn id, code), ``gross``
    each, no fee."""
    models = tuple(SettlementTxn(line_no=i + 1, provider_txn_id=t, reference=c, gross=gross,
                                 fee=0, net=gross, batch_id=batch_id, paid_at=at(settled_on, 8))
                   for i, (t, c) in enumerate(txns))
    sf = SettlementFile(source=name, format="vnpay", batches=(SettlementBatch(
        batch_id=batch_id, provider="vnpay", settled_on=settled_on,
        net_total=gross * len(models), transactions=models),))
    world.fp.statements.import_settlement(
        sf, world.account, file_name=name, file_sha256=hashlib.sha256(name.encode()).hexdigest(),
        file_size=10, actor="ke.toan", replace_reason=reason)


def test_a_late_statement_makes_the_later_days_that_paid_its_references_run_again(
        fp, world) -> None:  # noqa: ANN001
    """r was paid twice: on D−20 (that statement came weeks late) and on D−10. The later
    day matched r in full when it ran; once D−20 runs, the D−10 transfer is the duplicate
    — the same night runs D−10 again, and a refund is due."""
    r = world.ref()
    early, later = D1 - timedelta(days=20), D1 - timedelta(days=10)
    world.statement(later, [(10_000, r.code, at(later, 9))])
    assert world.run(later).matched == 10_000 and state(fp, r.code) == "settled"
    world.statement(early, [(10_000, r.code, at(early, 9))])      # weeks late
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    acc = world.account
    assert out[(acc, early)].status == "balanced" and out[(acc, early)].later_marked == 1
    assert out[(acc, later)].status == "balanced" and out[(acc, later)].attempt == 2
    assert matched_days(fp, r.code) == [early]
    assert open_mismatches(fp, r.code) == [(later, "duplicate")]
    assert marks(fp) == 0 and state(fp, r.code) == "settled"
    again = nightly(fp, D1, catch_up_days=2)
    assert {o.status for o in again} == {"skipped"}


def test_a_later_duplicate_becomes_the_payment_when_a_correction_takes_the_first_away(
        fp, world) -> None:  # noqa: ANN001
    """D1 settled r through a VNPAY batch; D2's direct transfer for r was held as a
    duplicate. The gateway's corrected file says T1 was c's: D1 runs again, D2 is marked
    and runs in the same night, and its transfer now pays r — no refund of r's only
    money, and r ends settled."""
    r, c = world.ref(), world.ref()
    d2 = D1 + timedelta(days=1)
    world.statement(D1, [(10_000, "VNPAY TT LO VNP-DUP-0001", at(D1, 23))])
    batch(world, "VNP-DUP-0001", D1, [("T1", r.code)], "vnpay-1.csv")
    world.statement(d2, [(10_000, r.code, at(d2, 9))])
    assert {o.status for o in nightly(fp, d2, catch_up_days=1)} == {"balanced"}
    assert open_mismatches(fp, r.code) == [(d2, "duplicate")]
    batch(world, "VNP-DUP-0001", D1, [("T1", c.code)], "vnpay-1-fixed.csv", reason=REASON)
    out = {(o.account_id, o.day): o for o in nightly(fp, d2, catch_up_days=1)}
    acc = world.account
    assert out[(acc, D1)].attempt == 2 and out[(acc, D1)].later_marked == 1
    assert out[(acc, d2)].attempt == 2 and out[(acc, d2)].status == "balanced"
    assert matched_days(fp, r.code) == [d2] and matched_days(fp, c.code) == [D1]
    assert open_mismatches(fp, r.code) == []
    assert (state(fp, r.code), state(fp, c.code)) == ("settled", "settled")
    assert marks(fp) == 0


def test_a_correction_moving_a_batch_reruns_its_old_day_before_the_window(
        fp, world) -> None:  # noqa: ANN001
    """The batch settled on D−10 and that day placed it; the corrected file says D−1. The
    old day lies before the catch-up window, yet the night runs it (the import's period
    covers the old day) and the batch is placed once, by D−1."""
    r = world.ref()
    old, new = D1 - timedelta(days=10), D1 - timedelta(days=1)
    world.statement(old, [(10_000, "VNPAY TT LO VNP-MOVE-0001", at(old, 23))])
    world.statement(new, [(10_000, "VNPAY TT LO VNP-MOVE-0001", at(new, 23))])
    batch(world, "VNP-MOVE-0001", old, [("T1", r.code)], "vnpay-1.csv")
    world.run(old)
    world.run(new)
    assert matched_days(fp, r.code) == [old]
    batch(world, "VNP-MOVE-0001", new, [("T1", r.code)], "vnpay-1-fixed.csv", reason=REASON)
    with fp.db.session() as s:
        period = s.execute(select(StatementImportRow.period_start, StatementImportRow.period_end)
                           .order_by(StatementImportRow.id.desc()).limit(1)).one()
    assert tuple(period) == (old, new)
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    assert out[(world.account, old)].attempt == 2
    assert matched_days(fp, r.code) == [new]
    M = ReconMatchRow
    with fp.db.session() as s:
        placed = s.scalars(select(M.day).where(M.batch_id == "VNP-MOVE-0001").distinct())
        assert list(placed) == [new]


def test_a_part_held_by_a_moved_batch_belongs_to_its_new_day_and_is_carried(
        fp, world) -> None:  # noqa: ANN001
    """D−10 placed the batch and held its half payment as underpaid; the correction moves
    the batch to D−1, whose run raises the same row again: the row is D−1's now (its
    re-runs manage it), and D+4, whose window starts after D−10, carries the part so the
    other half completes r."""
    old, new, later = D1 - timedelta(days=10), D1 - timedelta(days=1), D1 + timedelta(days=4)
    world.issued_at = at(new - timedelta(days=1))  # still payable on D+4
    r = world.ref()
    world.statement(old, [(5_000, "VNPAY TT LO VNP-HALF-01", at(old, 23))])
    world.statement(new, [(5_000, "VNPAY TT LO VNP-HALF-01", at(new, 23))])
    batch(world, "VNP-HALF-01", old, [("T1", r.code)], "vnpay-h.csv", gross=5_000)
    world.run(old)
    world.run(new)
    assert open_mismatches(fp, r.code) == [(old, "underpaid")]
    batch(world, "VNP-HALF-01", new, [("T1", r.code)], "vnpay-h-fixed.csv", reason=REASON,
          gross=5_000)
    nightly(fp, D1, catch_up_days=2)
    assert open_mismatches(fp, r.code) == [(new, "underpaid")]
    world.statement(later, [(5_000, r.code, at(later, 9))])
    assert world.run(later).status == "balanced"
    assert open_mismatches(fp, r.code) == [] and state(fp, r.code) == "settled"


def test_a_batch_moved_back_takes_its_held_part_back_to_its_first_day(
        fp, world) -> None:  # noqa: ANN001
    """A second correction moves the batch back to D−10: D−10 raises the row again and
    owns it, so D−1's re-run, which no longer places the batch, leaves it open."""
    old, new = D1 - timedelta(days=10), D1 - timedelta(days=1)
    r = world.ref()
    world.statement(old, [(5_000, "VNPAY TT LO VNP-BACK-01", at(old, 23))])
    world.statement(new, [(5_000, "VNPAY TT LO VNP-BACK-01", at(new, 23))])
    batch(world, "VNP-BACK-01", old, [("T1", r.code)], "vnpay-b.csv", gross=5_000)
    nightly(fp, D1, catch_up_days=12)
    batch(world, "VNP-BACK-01", new, [("T1", r.code)], "vnpay-b-2.csv", reason=REASON,
          gross=5_000)
    nightly(fp, D1, catch_up_days=2)
    assert open_mismatches(fp, r.code) == [(new, "underpaid")]
    batch(world, "VNP-BACK-01", old, [("T1", r.code)], "vnpay-b-3.csv", reason=REASON,
          gross=5_000)
    out = nightly(fp, D1, catch_up_days=2)
    assert {(o.day, o.status) for o in out if o.account_id == world.account} >= {
        (old, "balanced"), (new, "balanced")}
    assert open_mismatches(fp, r.code) == [(old, "underpaid")]


def test_an_import_without_a_period_end_is_passed_over(fp, world) -> None:  # noqa: ANN001
    r = world.ref()
    old = D1 - timedelta(days=10)
    world.statement(old, [(10_000, r.code, at(old, 9))])
    since, first = datetime.now(UTC) - timedelta(days=1), D1 - timedelta(days=2)
    assert world.recon.imported_days(since, first) == [(world.account, old)]
    with fp.db.session() as s:
        s.execute(StatementImportRow.__table__.update().values(period_end=None))
    assert world.recon.imported_days(since, first) == []
    out = nightly(fp, D1, catch_up_days=2)
    assert {o.status for o in out if o.account_id == world.account} == {"balanced"}


def test_a_part_completed_earlier_by_a_late_statement_is_not_carried_twice(
        fp, world) -> None:  # noqa: ANN001
    """r paid 4.000 on a (held as underpaid) and the rest on c, which cleared the part.
    A statement for b, between them, comes late with the rest too: b now completes r with
    the carried part, and c — marked, run again — must not carry that part a second time:
    its transfer is the duplicate, for exactly its own 6.000."""
    r = world.ref()
    a, b, c = (D1 - timedelta(days=n) for n in (12, 10, 8))
    world.statement(a, [(4_000, f"{r.code} lan 1", at(a, 9))])
    world.run(a)
    world.statement(c, [(6_000, f"{r.code} lan 2", at(c, 9))])
    world.run(c)
    assert state(fp, r.code) == "settled"
    world.statement(b, [(6_000, f"{r.code} con lai", at(b, 9))])          # weeks late
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    assert out[(world.account, c)].attempt == 2
    assert matched_days(fp, r.code) == [b, b]                 # the part and b's transfer
    X = ReconMismatchRow
    with fp.db.session() as s:
        held = s.execute(select(X.day, X.category, X.amount, X.status).where(
            X.reference_code == r.code).order_by(X.day)).tuples().all()
    assert held == [(a, "underpaid", 4_000, "cleared"), (c, "duplicate", 6_000, "open")]
    with fp.db.session() as s:
        assert s.scalar(select(ReconMismatchRow.cleared_day).where(
            ReconMismatchRow.category == "underpaid")) == b


def test_a_link_marks_only_the_days_that_name_what_it_changed(fp, world) -> None:  # noqa: ANN001
    """D1 matched r1 and could not place a transfer without a code; D2 holds a duplicate of
    r1. Linking the D1 transfer to r2 changes r2 only: D2, which names r1, is not marked."""
    from reconcile.resolution import Resolutions

    r1, r2 = world.ref(), world.ref()
    d2 = D1 + timedelta(days=1)
    world.statement(D1, [(10_000, r1.code, at(D1, 9)), (10_000, "CHUYEN TIEN", at(D1, 10))])
    world.statement(d2, [(10_000, r1.code, at(d2, 9))])
    world.run(D1)
    world.run(d2)
    (unknown,) = Resolutions(fp).list(category="unknown_reference")
    done = Resolutions(fp).link(unknown.id, r2.code, reason="người nộp xác nhận",
                                actor="kbnn.demo")
    assert done.rerun.status == "balanced" and done.rerun.later_marked == 0
    assert marks(fp) == 0 and state(fp, r2.code) == "settled"


def test_a_refund_decided_for_money_that_now_pays_a_reference_is_flagged(
        fp, world, caplog) -> None:  # noqa: ANN001
    """The D2 duplicate of r was resolved refund_due; the correction makes it r's payment.
    The decision stays (a person's), but the re-run says at WARNING that it is moot."""
    from reconcile.resolution import Resolutions

    r, c = world.ref(), world.ref()
    d2 = D1 + timedelta(days=1)
    world.statement(D1, [(10_000, "VNPAY TT LO VNP-RF-0001", at(D1, 23))])
    batch(world, "VNP-RF-0001", D1, [("T1", r.code)], "vnpay-1.csv")
    world.statement(d2, [(10_000, r.code, at(d2, 9))])
    nightly(fp, d2, catch_up_days=1)
    (dup,) = Resolutions(fp).list(category="duplicate")
    Resolutions(fp).refund_due(dup.id, reason="hoàn tiền nộp trùng", actor="kbnn.demo")
    batch(world, "VNP-RF-0001", D1, [("T1", c.code)], "vnpay-1-fixed.csv", reason=REASON)
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        nightly(fp, d2, catch_up_days=1)
    assert matched_days(fp, r.code) == [d2]
    (warned,) = [x.message for x in caplog.records if "was resolved refund_due" in x.message]
    assert f"mismatch {dup.id}" in warned
    assert Resolutions(fp).get(dup.id).status == "resolved"
    caplog.clear()  # said once: a further re-run finds nothing new to say
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        (again,) = world.recon.run(d2, world.account)
    assert again.status == "balanced"
    assert not [x for x in caplog.records if "was resolved refund_due" in x.message]


def test_an_unchanged_rerun_leaves_a_cleared_notice_cleared(fp, world) -> None:  # noqa: ANN001
    """r's money came on D1 before its callback (a money_no_callback notice); the callback
    came on D2 and D2's run cleared the notice. Re-running D2 unchanged keeps it cleared:
    a re-run reopens only what it clears again."""
    r, other = world.ref(), world.ref()
    d2 = D1 + timedelta(days=1)
    world.callback(other.code, 10_000, at(D1, 8))            # callbacks serve this account
    world.statement(D1, [(10_000, other.code, at(D1, 8, 5)), (10_000, r.code, at(D1, 9))])
    world.run(D1)
    X = ReconMismatchRow

    def notice() -> tuple:
        with fp.db.session() as s:
            return tuple(s.execute(select(X.status, X.cleared_day).where(
                X.reference_code == r.code, X.category == "money_no_callback")).one())

    assert notice() == ("open", None)
    world.callback(r.code, 10_000, at(D1, 9))                 # arrives late
    world.run(d2)
    assert notice() == ("cleared", d2)
    first = world.run(d2)
    assert notice() == ("cleared", d2)
    again = world.run(d2)
    assert again.digest == first.digest and notice() == ("cleared", d2)


def test_a_later_day_that_only_holds_money_for_the_reference_is_marked_too(
        fp, world) -> None:  # noqa: ANN001
    """C held 4.000 for r as underpaid (no match names r there). A statement for B,
    before C, comes late with all of r's 10.000: C is marked through its mismatch, runs
    again, and its 4.000 is now money r did not need — no longer a part waiting for the
    rest."""
    r = world.ref()
    b, c = D1 - timedelta(days=12), D1 - timedelta(days=10)
    world.statement(c, [(4_000, f"{r.code} lan 1", at(c, 9))])
    world.run(c)
    assert open_mismatches(fp, r.code) == [(c, "underpaid")]
    world.statement(b, [(10_000, r.code, at(b, 9))])                      # weeks late
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    assert out[(world.account, b)].later_marked == 1
    assert out[(world.account, c)].attempt == 2
    assert matched_days(fp, r.code) == [b]
    assert [cat for _d, cat in open_mismatches(fp, r.code)] in (["duplicate"], ["overpaid"])
    assert marks(fp) == 0


def test_a_part_its_own_day_takes_back_marks_the_day_that_completed_it(
        fp, world) -> None:  # noqa: ANN001
    """A held 4.000 for r as underpaid; C's 6.000 completed r and cleared that row. A
    second statement for A comes late with the other 6.000: A's re-run pays r in full
    itself and lets the part's row go (superseded by its own day). C, which counted the
    part, is marked, runs again, and its 6.000 is now a duplicate."""
    r = world.ref()
    a, c = D1 - timedelta(days=12), D1 - timedelta(days=10)
    world.statement(a, [(4_000, f"{r.code} lan 1", at(a, 9))])
    world.run(a)
    world.statement(c, [(6_000, f"{r.code} lan 2", at(c, 9))])
    world.run(c)
    assert state(fp, r.code) == "settled" and matched_days(fp, r.code) == [c, c]
    world.statement(a, [(6_000, f"{r.code} con lai", at(a, 15))])         # weeks late
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    assert out[(world.account, a)].later_marked == 1
    assert out[(world.account, c)].attempt == 2
    assert matched_days(fp, r.code) == [a, a]
    X = ReconMismatchRow
    with fp.db.session() as s:
        held = s.execute(select(X.day, X.category, X.amount, X.status).where(
            X.reference_code == r.code).order_by(X.day)).tuples().all()
    assert held == [(a, "underpaid", 4_000, "superseded"), (c, "duplicate", 6_000, "open")]
    assert marks(fp) == 0 and state(fp, r.code) == "settled"


def test_a_duplicate_its_line_day_holds_again_is_not_let_go_by_the_later_day(
        fp, world) -> None:  # noqa: ANN001
    """A held 4.000 for r as underpaid; C's 10.000 paid r in full, so C held A's part as a
    duplicate (a row of C's, naming A's line). A statement for B, before both, comes late
    with all of r's 10.000: A's re-run holds its own 4.000 as the duplicate now — the row
    becomes A's — and C's re-run, which no longer carries the part, must not let it go."""
    r = world.ref()
    b, a, c = (D1 - timedelta(days=n) for n in (12, 10, 8))
    world.statement(a, [(4_000, f"{r.code} lan 1", at(a, 9))])
    world.run(a)
    world.statement(c, [(10_000, r.code, at(c, 9))])
    world.run(c)
    X = ReconMismatchRow

    def held() -> list[tuple]:
        with fp.db.session() as s:
            return s.execute(select(X.day, X.line_day, X.category, X.amount).where(
                X.reference_code == r.code, X.status.in_(("open", "carried_over")))
                .order_by(X.line_day)).tuples().all()

    assert held() == [(c, a, "duplicate", 4_000)]
    world.statement(b, [(10_000, r.code, at(b, 9))])                      # weeks late
    out = {(o.account_id, o.day): o for o in nightly(fp, D1, catch_up_days=2)}
    assert out[(world.account, a)].attempt == 2 and out[(world.account, c)].attempt == 2
    assert matched_days(fp, r.code) == [b]
    assert held() == [(a, a, "duplicate", 4_000), (c, c, "duplicate", 10_000)]
    assert marks(fp) == 0


def test_the_stored_result_holds_the_rows_of_the_day_whatever_run_named_them_last(
        fp, world) -> None:  # noqa: ANN001
    """What a re-run compares with: the rows its day holds (which its re-run may let go),
    also one a later day's run raised again last, beside those its own last run raised."""
    from reconcile import stale

    r = world.ref()
    a, c = D1 - timedelta(days=10), D1 - timedelta(days=8)
    world.statement(a, [(4_000, f"{r.code} lan 1", at(a, 9))])
    world.run(a)
    world.statement(c, [(1_000, "CHUYEN TIEN", at(c, 9))])
    later = world.run(c)
    X = ReconMismatchRow
    with fp.db.session() as s:
        s.execute(X.__table__.update().where(X.reference_code == r.code)
                  .values(run_id=later.run_id))
    with fp.db.session() as s:
        was = stale.before(s, world.account, a)
    assert was is not None
    assert {(key.split(":")[0], amount, code) for key, amount, code in was.held} == {
        ("underpaid", 4_000, r.code)}


@pytest.mark.parametrize("row_gone", [False, True])
def test_a_carried_gateway_part_carries_its_own_money_not_the_batch_credit(
        fp, world, row_gone: bool) -> None:  # noqa: ANN001
    """One VNPAY credit of 9.800 paid half of r and half of r2 (5.000 gross, 100 fee, 4.900
    net each; both held as underpaid). r's other 5.000 comes later: the carried part is
    T1's 4.900 and covers its 5.000 gross — not the batch's 9.800, nor only its net — so
    r is settled with exactly what it owed and r2 still waits. Also when the settlement
    rows no longer hold T1 (a correction replaced the batch; here its row is deleted to
    reach the loader's fallback): the part carries what its evidence recorded."""
    old, later = D1 - timedelta(days=3), D1
    r, r2 = world.ref(), world.ref()
    world.statement(old, [(9_800, "VNPAY TT LO VNP-TWO-01", at(old, 23))])
    world.settlement("VNP-TWO-01", old, [("T1", r.code, 5_000, 100),
                                         ("T2", r2.code, 5_000, 100)])
    world.run(old)
    assert open_mismatches(fp, r.code) == open_mismatches(fp, r2.code) == [(old, "underpaid")]
    if row_gone:
        with fp.db.session() as s:
            s.execute(delete(SettlementTxnRow).where(SettlementTxnRow.provider_txn_id == "T1"))
    world.statement(later, [(5_000, r.code, at(later, 9))])
    assert world.run(later).status == "balanced"
    assert open_mismatches(fp, r.code) == [] and state(fp, r.code) == "settled"
    assert paid_parts(fp, r.code) == [("T1", 4_900), (None, 5_000)]
    assert open_mismatches(fp, r2.code) == [(old, "underpaid")]
