"""Days an earlier day's run made stale, and files imported late: the nightly job runs them,
oldest first, in the same night. Real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

from sqlalchemy import func, select

from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow, ReconStaleDayRow
from feepay.storage.tables_statements import StatementImportRow
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


def batch(world: World, batch_id: str, settled_on: date, txns: list[tuple[str, str]],
          name: str, reason: str | None = None) -> None:
    """A VNPAY batch settled on ``settled_on``; txns: (provider txn id, code), 10.000 gross,
    no fee."""
    models = tuple(SettlementTxn(line_no=i + 1, provider_txn_id=t, reference=c, gross=10_000,
                                 fee=0, net=10_000, batch_id=batch_id, paid_at=at(settled_on, 8))
                   for i, (t, c) in enumerate(txns))
    sf = SettlementFile(source=name, format="vnpay", batches=(SettlementBatch(
        batch_id=batch_id, provider="vnpay", settled_on=settled_on,
        net_total=10_000 * len(models), transactions=models),))
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


def test_a_correction_moving_a_batch_reruns_its_old_day_however_old(fp, world) -> None:  # noqa: ANN001
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


def test_an_import_without_a_period_end_does_not_stop_the_night(fp, world) -> None:  # noqa: ANN001
    r = world.ref()
    world.statement(D1, [(10_000, r.code, at(D1, 9))])
    with fp.db.session() as s:
        s.execute(StatementImportRow.__table__.update().values(period_end=None))
    out = nightly(fp, D1, catch_up_days=0)
    assert [o.status for o in out if o.account_id == world.account] == ["balanced"]
