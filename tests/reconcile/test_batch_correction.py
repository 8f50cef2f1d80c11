"""A gateway batch that did not add up, corrected by the gateway's new file: the reviewer
imports it with a reason, the stored batch is replaced (its old version kept in the audit
log), and the next scheduled run reconciles the day again. Real SQLite/PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import pytest
from sqlalchemy import func, select

from feepay.exceptions import Conflict, ValidationError
from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.money import VN_TZ
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow, ReconMismatchRow
from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementImportRow,
)

D = date(2025, 12, 1)
BATCH = "VNP-FIX-0001"
REASON = "VNPAY gửi lại file đối soát lô VNP-FIX-0001 (email 02/12)"


def at(day: date, hh: int = 9) -> datetime:
    return datetime.combine(day, time(hh), VN_TZ)


def settlement_file(txns: list[tuple], settled_on: date = D) -> SettlementFile:
    """One VNPAY batch ``BATCH``; txns: (provider_txn_id, code, gross, fee)."""
    models = tuple(SettlementTxn(line_no=i + 1, provider_txn_id=t[0], reference=t[1],
                                 gross=t[2], fee=t[3], net=t[2] - t[3], batch_id=BATCH,
                                 paid_at=at(settled_on, 8 + i))
                   for i, t in enumerate(txns))
    batch = SettlementBatch(batch_id=BATCH, provider="vnpay", settled_on=settled_on,
                            net_total=sum(t.net for t in models), transactions=models)
    return SettlementFile(source="vnpay.csv", format="vnpay", batches=(batch,))


def import_file(fp, sf: SettlementFile, account: int, name: str,  # noqa: ANN001, ANN201
                reason: str | None = None, actor: str = "ke.toan"):
    return fp.statements.import_settlement(
        sf, account, file_name=name, file_sha256=hashlib.sha256(name.encode()).hexdigest(),
        file_size=100, actor=actor, replace_reason=reason)


def counts(fp) -> tuple[int, int, int]:  # noqa: ANN001
    with fp.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (
            SettlementBatchRow, SettlementTxnRow, StatementImportRow))


def stored_batch(fp) -> tuple[int, int, int, list[str]]:  # noqa: ANN001
    """(import id, net total, txn count, provider txn ids) of ``BATCH`` as stored."""
    with fp.db.session() as s:
        b = s.scalars(select(SettlementBatchRow).where(SettlementBatchRow.batch_id == BATCH)
                      ).one()
        txns = s.scalars(select(SettlementTxnRow.provider_txn_id)
                         .where(SettlementTxnRow.batch_pk == b.id)
                         .order_by(SettlementTxnRow.provider_txn_id)).all()
        return b.import_id, b.net_total, b.txn_count, list(txns)


@pytest.fixture
def short_batch(fp, world):  # noqa: ANN001, ANN201
    """Two VNPAY payments (callbacks in) credited as 19.600 in one batch, whose first
    settlement file lists only one of them: the day holds ``batch_total_differs``."""
    a, b = world.ref(), world.ref()  # 10.000 each
    world.callback(a.code, 10_000, at(D, 8), provider="vnpay", txn="T1")
    world.callback(b.code, 10_000, at(D, 9), provider="vnpay", txn="T2")
    world.statement(D, [(19_600, f"VNPAY TT LO {BATCH}", at(D, 23))])
    first = import_file(fp, settlement_file([("T1", a.code, 10_000, 200)]), world.account,
                        "vnpay-1.csv")
    return a, b, first


def test_corrected_batch_is_replaced_and_the_day_reconciled_again(fp, world,  # noqa: ANN001
                                                                  short_batch) -> None:
    a, b, first = short_batch
    out = world.run(D, trigger="scheduler", skip_done=True)
    assert out.status == "balanced" and (out.matched, out.held) == (0, 19_600)
    (held,) = [m for m in mismatches(fp) if m.category == "batch_total_differs"]
    assert (held.status, held.batch_id, held.amount) == ("open", BATCH, 19_600)

    fixed = settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)])
    result = import_file(fp, fixed, world.account, "vnpay-1-fixed.csv", reason=REASON)
    assert result.replaced_batches == [BATCH] and (result.lines, result.new) == (2, 2)
    assert stored_batch(fp) == (result.import_id, 19_600, 2, ["T1", "T2"])

    again = world.run(D, trigger="scheduler", skip_done=True)  # the import makes it stale
    assert again.status == "balanced" and again.attempt == 2
    assert (again.statement_credits, again.matched, again.held) == (19_600, 19_600, 0)
    assert matched_rules(fp) == {a.code: "gateway", b.code: "gateway"}
    assert refs_state(fp, a.code, b.code) == ["settled", "settled"]
    assert status_of(fp, held.id) == "superseded"
    assert world.run(D, trigger="scheduler", skip_done=True).status == "skipped"

    (entry,) = [e for e in fp.audit.entries("settlement_batch")
                if e["action"] == "statements.replace_batch"]
    assert (entry["actor"], entry["reason"]) == ("ke.toan", REASON)
    old = entry["details"]["old"]
    assert (old["import_id"], old["net_total"], old["txn_count"], old["settled_on"]) == (
        first.import_id, 9_800, 1, D.isoformat())
    (t1,) = old["transactions"]
    assert (t1["provider_txn_id"], t1["kind"], t1["gross"], t1["fee"], t1["net"],
            t1["reference"]) == ("T1", "payment", 10_000, 200, 9_800, a.code)
    assert t1["id"] and t1["paid_at"].startswith("2025-12-01T01:00")
    assert entry["details"]["new"]["import_id"] == result.import_id
    assert fp.audit.verify().ok


def test_without_a_reason_the_corrected_file_is_refused(fp, world,  # noqa: ANN001
                                                        short_batch) -> None:
    a, b, first = short_batch
    before, stored = counts(fp), stored_batch(fp)
    fixed = settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)])
    with pytest.raises(Conflict, match=f"batch {BATCH} was already imported with net.*"
                                       "--replace-batches REASON"):
        import_file(fp, fixed, world.account, "vnpay-1-fixed.csv")
    for blank in ("", "   "):
        with pytest.raises(ValidationError, match="needs a reason"):
            import_file(fp, fixed, world.account, "vnpay-1-fixed.csv", reason=blank)
    with pytest.raises(ValidationError, match="acting person"):
        import_file(fp, fixed, world.account, "vnpay-1-fixed.csv", reason=REASON, actor=" ")
    assert counts(fp) == before and stored_batch(fp) == stored
    assert not [e for e in fp.audit.entries() if e["action"] == "statements.replace_batch"]


def test_a_batch_is_never_replaced_into_another_account(fp, world, demo,  # noqa: ANN001
                                                        short_batch) -> None:
    a, b, _ = short_batch
    other = next(acc for acc in demo.accounts.values() if acc != world.account)
    before, stored = counts(fp), stored_batch(fp)
    fixed = settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)])
    with pytest.raises(Conflict, match=f"cannot move it into account {other}"):
        import_file(fp, fixed, other, "vnpay-other.csv", reason=REASON)
    assert counts(fp) == before and stored_batch(fp) == stored


def test_an_identical_file_replaces_nothing(fp, world, short_batch) -> None:  # noqa: ANN001
    a, _, first = short_batch
    same = import_file(fp, settlement_file([("T1", a.code, 10_000, 200)]), world.account,
                       "vnpay-1-again.csv", reason=REASON)
    assert same.replaced_batches == [] and (same.new, same.duplicates) == (0, 1)
    assert stored_batch(fp) == (first.import_id, 9_800, 1, ["T1"])
    assert not [e for e in fp.audit.entries() if e["action"] == "statements.replace_batch"]


def test_a_transaction_of_another_batch_is_not_taken_over(fp, world,  # noqa: ANN001
                                                          short_batch) -> None:
    """The provider's transaction ids are unique: a correction listing one that another
    batch holds is refused rather than silently dropping it."""
    a, b, _ = short_batch
    world.settlement("VNP-OTHER-0002", D, [("T2", b.code, 10_000, 200)])
    before, stored = counts(fp), stored_batch(fp)
    fixed = settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)])
    with pytest.raises(Conflict, match="stored in another batch"):
        import_file(fp, fixed, world.account, "vnpay-1-fixed.csv", reason=REASON)
    assert counts(fp) == before and stored_batch(fp) == stored


# -- reading the outcome --------------------------------------------------------------------------
def mismatches(fp) -> list[ReconMismatchRow]:  # noqa: ANN001
    with fp.db.session() as s:
        return list(s.scalars(select(ReconMismatchRow).order_by(ReconMismatchRow.id)))


def status_of(fp, mismatch_id: int) -> str:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReconMismatchRow.status).where(ReconMismatchRow.id == mismatch_id))


def matched_rules(fp) -> dict[str, str]:  # noqa: ANN001
    with fp.db.session() as s:
        rows = s.execute(select(ReferenceRow.code, ReconMatchRow.rule)
                         .join(ReferenceRow, ReferenceRow.id == ReconMatchRow.reference_id))
        return dict(rows.all())


def refs_state(fp, *codes: str) -> list[str]:  # noqa: ANN001
    with fp.db.session() as s:
        return [s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == c))
                for c in codes]


def test_a_correction_moving_the_batch_to_a_later_day_reruns_its_old_day(
        fp, world, short_batch) -> None:  # noqa: ANN001
    """The day that held the batch no longer sees it once the gateway says it settled
    later: that day is still run again, so its batch_total_differs does not linger."""
    a, b, _ = short_batch
    world.run(D, trigger="scheduler", skip_done=True)
    (held,) = [m for m in mismatches(fp) if m.category == "batch_total_differs"]
    later = date(2025, 12, 5)  # beyond the batch lag of the old day
    fixed = settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)],
                            settled_on=later)
    assert import_file(fp, fixed, world.account, "vnpay-late.csv",
                       reason=REASON).replaced_batches == [BATCH]
    again = world.run(D, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2
    assert status_of(fp, held.id) == "superseded"
    assert world.run(D, trigger="scheduler", skip_done=True).status == "skipped"


def test_a_correction_that_moves_a_payment_moves_its_reference_back(
        fp, world, caplog) -> None:  # noqa: ANN001
    """T2 was b's; the corrected file says it was c's. c is settled by the re-run; b, with
    no money behind it any more and no callback, moves back from settled (to ``expired``:
    its expiry has passed) — and the run says so at WARNING, naming b."""
    a, b, c = world.ref(), world.ref(), world.ref()
    world.statement(D, [(19_600, f"VNPAY TT LO {BATCH}", at(D, 23))])
    import_file(fp, settlement_file([("T1", a.code, 10_000, 200), ("T2", b.code, 10_000, 200)]),
                world.account, "vnpay-1.csv")
    assert world.run(D).matched == 19_600
    assert refs_state(fp, b.code, c.code) == ["settled", "issued"]
    import_file(fp, settlement_file([("T1", a.code, 10_000, 200), ("T2", c.code, 10_000, 200)]),
                world.account, "vnpay-1-fixed.csv", reason=REASON)
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        again = world.run(D, trigger="scheduler", skip_done=True)
    assert again.status == "balanced" and again.matched == 19_600
    assert refs_state(fp, b.code, c.code) == ["expired", "settled"]
    (warned,) = [r for r in caplog.records if "no longer have money matched" in r.message]
    assert b.code in warned.message and a.code not in warned.message
    assert "move back from settled now" in warned.message
    (entry,) = fp.audit.entries("reference", b.code)
    assert (entry["action"], entry["details"]["new_state"]) == ("references.unsettle",
                                                                "expired")
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        caplog.clear()
        world.run(D)  # an unchanged re-run drops nothing: silent
    assert not [r for r in caplog.records if "no longer have money matched" in r.message]
