"""A re-run that no longer matches money to a settled reference moves it back from
``settled`` (queued move ``unsettled``, applied last, audited), and a re-run replaces the
moves its account-day's earlier runs left queued. Real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
from feepay.money import now_utc
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMismatchRow, ReconReferenceMoveRow
from reconcile import moves
from tests.core.test_storage import empty_url  # noqa: F401 - a fixture: an empty database
from tests.reconcile.conftest import World, at

D = date(2025, 12, 1)
D2 = date(2025, 12, 2)
BATCH = "VNP-UNS-0001"
REASON = "VNPAY gửi lại file đối soát lô VNP-UNS-0001: giao dịch T2, T3, T4 sai mã"


# -- building the day ---------------------------------------------------------------------------
def settlement(txns: list[tuple[str, str]]) -> SettlementFile:
    """One VNPAY batch ``BATCH`` settled on ``D``: (provider txn id, code) each, 10.000
    gross, 200 fee."""
    models = tuple(SettlementTxn(line_no=i + 1, provider_txn_id=txn, reference=code,
                                 gross=10_000, fee=200, net=9_800, batch_id=BATCH,
                                 paid_at=at(D, 8, i))
                   for i, (txn, code) in enumerate(txns))
    batch = SettlementBatch(batch_id=BATCH, provider="vnpay", settled_on=D,
                            net_total=9_800 * len(models), transactions=models)
    return SettlementFile(source="vnpay.csv", format="vnpay", batches=(batch,))


def import_settlement(world: World, txns: list[tuple[str, str]], name: str,  # noqa: ANN201
                      reason: str | None = None):
    return world.fp.statements.import_settlement(
        settlement(txns), world.account, file_name=name,
        file_sha256=hashlib.sha256(name.encode()).hexdigest(), file_size=100,
        actor="ke.toan", replace_reason=reason)


class Day:
    """A settled day: a, b, e, p paid through one VNPAY batch (T1–T4) credited on ``D``.
    b has a callback for all of it, p one for 4.000, a and e none; e's expiry is still
    ahead, the others' has passed. ``correct()`` imports the gateway's corrected file:
    T2, T3, T4 were c's, f's and q's."""

    def __init__(self, fp, world: World) -> None:  # noqa: ANN001
        self.fp, self.world = fp, world
        self.a, self.b, self.c, self.f, self.p, self.q = (world.ref() for _ in range(6))
        world.issued_at = now_utc() - timedelta(days=1)  # payable for a week from now
        self.e = world.ref()
        world.callback(self.b.code, 10_000, at(D, 7), txn="CB-B")
        world.callback(self.p.code, 4_000, at(D, 7, 30), txn="CB-P")
        world.statement(D, [(39_200, f"VNPAY TT LO {BATCH}", at(D, 23))])
        import_settlement(world, [("T1", self.a.code), ("T2", self.b.code), ("T3", self.e.code),
                               ("T4", self.p.code)], "vnpay-1.csv")

    def correct(self) -> None:
        import_settlement(self.world, [("T1", self.a.code), ("T2", self.c.code),
                                    ("T3", self.f.code), ("T4", self.q.code)],
                          "vnpay-1-fixed.csv", reason=REASON)


@pytest.fixture
def day(fp, world) -> Day:  # noqa: ANN001
    return Day(fp, world)


# -- reading ------------------------------------------------------------------------------------
def row(fp, code: str) -> ReferenceRow:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReferenceRow).where(ReferenceRow.code == code))


def states(fp, *refs) -> list[str]:  # noqa: ANN001, ANN002
    return [row(fp, r.code).state for r in refs]


def queued(fp) -> list[tuple[int, int, str]]:  # noqa: ANN001
    """(run id, reference id, state) of every queued move."""
    M = ReconReferenceMoveRow
    with fp.db.session() as s:
        return sorted(s.execute(select(M.run_id, M.reference_id, M.state)).all())


def unsettle_entries(fp) -> list[dict]:  # noqa: ANN001
    return [e for e in fp.audit.entries("reference") if e["action"] == "references.unsettle"]


def dropped_warnings(caplog) -> list[str]:  # noqa: ANN001
    return [r.message for r in caplog.records if "no longer have money matched" in r.message]


# -- the tests ----------------------------------------------------------------------------------
def test_a_corrected_file_moves_settled_references_back(fp, world, day: Day,  # noqa: ANN001
                                                        caplog) -> None:
    first = world.run(D)
    assert first.status == "balanced" and first.matched == 39_200
    assert states(fp, day.a, day.b, day.e, day.p) == ["settled"] * 4
    b_paid_at = row(fp, day.b.code).paid_at
    assert b_paid_at == at(D, 7)

    day.correct()
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        again = world.run(D, trigger="scheduler", actor="kbnn.doisoat", skip_done=True)
    assert again.status == "balanced" and again.attempt == 2 and again.matched == 39_200
    assert again.references_refused == 0
    (warned,) = dropped_warnings(caplog)
    assert all(r.code in warned for r in (day.b, day.e, day.p)) and day.a.code not in warned

    assert states(fp, day.a, day.c, day.f, day.q) == ["settled"] * 4
    b, e, p = row(fp, day.b.code), row(fp, day.e.code), row(fp, day.p.code)
    # b: its callback paid it in full; e: no callback, still payable; p: a part callback
    assert (b.state, b.amount_paid, b.paid_at, b.settled_at) == ("paid", 10_000, b_paid_at,
                                                                 None)
    assert (e.state, e.amount_paid, e.paid_at, e.settled_at) == ("issued", 0, None, None)
    assert (p.state, p.amount_paid, p.paid_at, p.settled_at) == ("partially_paid", 4_000,
                                                                 None, None)
    assert queued(fp) == []

    entries = {x["object_id"]: x for x in unsettle_entries(fp)}
    assert set(entries) == {day.b.code, day.e.code, day.p.code}
    for x in entries.values():
        assert (x["actor"], x["object_type"]) == ("kbnn.doisoat", "reference")
        assert x["details"]["run_id"] == again.run_id
        assert x["details"]["old_state"] == "settled"
    assert entries[day.b.code]["details"] == {
        "run_id": again.run_id, "old_state": "settled", "new_state": "paid",
        "amount_due": 10_000, "amount_paid_before": 10_000, "amount_paid_after": 10_000}
    assert entries[day.e.code]["details"]["new_state"] == "issued"
    assert entries[day.e.code]["details"]["amount_paid_after"] == 0
    assert entries[day.p.code]["details"]["amount_paid_after"] == 4_000
    assert fp.audit.verify().ok

    # idempotent: running the day again moves nothing back and says nothing
    caplog.clear()
    with caplog.at_level("WARNING", logger="reconcile.persist"):
        third = world.run(D)
    assert third.status == "balanced" and third.digest == again.digest
    assert not dropped_warnings(caplog)
    assert states(fp, day.a, day.b, day.c, day.e, day.f, day.p, day.q) == [
        "settled", "paid", "settled", "issued", "settled", "partially_paid", "settled"]
    assert len(unsettle_entries(fp)) == 3 and queued(fp) == []
    assert fp.audit.verify().ok


def test_a_reference_past_its_expiry_with_no_callback_moves_back_expired(
        fp, world) -> None:  # noqa: ANN001
    a, b = world.ref(), world.ref()  # issued 25/11/2025: expired by now
    world.statement(D, [(9_800, f"VNPAY TT LO {BATCH}", at(D, 23))])
    import_settlement(world, [("T1", a.code)], "vnpay-1.csv")
    world.run(D)
    assert states(fp, a) == ["settled"]
    import_settlement(world, [("T1", b.code)], "vnpay-1-fixed.csv", reason=REASON)
    world.run(D)
    assert states(fp, a, b) == ["expired", "settled"]
    assert row(fp, a.code).amount_paid == 0 and row(fp, a.code).settled_at is None


def test_a_part_the_rerun_still_holds_leaves_the_reference_partially_paid(
        fp, world) -> None:  # noqa: ANN001
    """The corrected file says T1 paid a only 4.000 (and T2 paid x the rest): a's money is
    now held as underpaid, not matched — a moves back, to ``partially_paid``."""
    a, x = world.ref(), world.ref()
    world.statement(D, [(9_800, f"VNPAY TT LO {BATCH}", at(D, 23))])
    import_settlement(world, [("T1", a.code)], "vnpay-1.csv")
    world.run(D)
    assert states(fp, a) == ["settled"]
    txns = (SettlementTxn(line_no=1, provider_txn_id="T1", reference=a.code, gross=4_000,
                          fee=200, net=3_800, batch_id=BATCH, paid_at=at(D, 8)),
            SettlementTxn(line_no=2, provider_txn_id="T2", reference=x.code, gross=6_000,
                          fee=0, net=6_000, batch_id=BATCH, paid_at=at(D, 8, 1)))
    fixed = SettlementFile(source="vnpay.csv", format="vnpay", batches=(SettlementBatch(
        batch_id=BATCH, provider="vnpay", settled_on=D, net_total=9_800, transactions=txns),))
    fp.statements.import_settlement(fixed, world.account, file_name="vnpay-1-fixed.csv",
                                    file_sha256="f" * 64, file_size=100, actor="ke.toan",
                                    replace_reason=REASON)
    again = world.run(D)
    assert again.status == "balanced" and again.held == 9_800
    assert states(fp, a, x) == ["partially_paid", "partially_paid"]
    assert row(fp, a.code).amount_paid == 0 and row(fp, a.code).settled_at is None
    (entry,) = unsettle_entries(fp)
    assert (entry["object_id"], entry["details"]["new_state"]) == (a.code, "partially_paid")


def test_a_callback_that_came_after_the_statement_settled_counts_when_it_moves_back(
        fp, world) -> None:  # noqa: ANN001
    """a was settled from the statement before its gateway callback came; the callback
    was stored, not applied (a settled reference takes no payment). When the corrected
    file takes the statement's money away, that callback still says a was paid: a moves
    back to ``paid``, not to unpaid."""
    a, c = world.ref(), world.ref()
    world.statement(D, [(9_800, f"VNPAY TT LO {BATCH}", at(D, 23))])
    import_settlement(world, [("T1", a.code)], "vnpay-1.csv")
    world.run(D)
    assert states(fp, a) == ["settled"]
    late = world.callback(a.code, 10_000, at(D, 8), provider="vnpay", txn="CB-LATE")
    assert not late.applied
    import_settlement(world, [("T1", c.code)], "vnpay-1-fixed.csv", reason=REASON)
    world.run(D)
    assert states(fp, a, c) == ["paid", "settled"]
    assert (row(fp, a.code).amount_paid, row(fp, a.code).settled_at) == (10_000, None)
    (entry,) = unsettle_entries(fp)
    assert entry["details"]["amount_paid_after"] == 10_000


def test_a_part_carried_from_an_earlier_day_stays_when_the_rest_is_taken_away(
        fp, world) -> None:  # noqa: ANN001
    """a paid 200 on D−1 (held as underpaid, carried) and the rest through VNPAY on D: D
    completed a and cleared the underpaid row. The corrected file says T1 was c's: D's
    re-run reopens the part it had cleared, and a moves back to ``partially_paid``."""
    a, c = world.ref(), world.ref()
    before = D - timedelta(days=1)
    world.statement(before, [(200, f"{a.code} lan 1", at(before, 9))])
    world.run(before)
    world.statement(D, [(9_800, f"VNPAY TT LO {BATCH}", at(D, 23))])
    import_settlement(world, [("T1", a.code)], "vnpay-1.csv")
    assert world.run(D).matched == 9_800
    assert states(fp, a) == ["settled"]
    import_settlement(world, [("T1", c.code)], "vnpay-1-fixed.csv", reason=REASON)
    world.run(D)
    assert states(fp, a) == ["partially_paid"]
    with fp.db.session() as s:
        part = s.execute(select(ReconMismatchRow.status, ReconMismatchRow.amount,
                                ReconMismatchRow.cleared_day).where(
            ReconMismatchRow.reference_code == a.code,
            ReconMismatchRow.category == "underpaid")).one()
    assert tuple(part) == ("open", 200, None)
    nxt = D + timedelta(days=1)                               # the rest, whenever it comes
    world.statement(nxt, [(9_800, a.code, at(nxt, 9))])
    assert world.run(nxt).matched == 9_800 and states(fp, a) == ["settled"]


def test_a_rerun_replaces_the_moves_its_earlier_run_left_queued(
        fp, world, day: Day, apply_fails) -> None:  # noqa: ANN001
    """The first run's apply died: its settles are still queued. The re-run after the
    correction deletes them and queues its own; b, e and p never were settled, so nothing
    moves back."""
    first = world.run(D)
    assert {run for run, _, _ in queued(fp)} == {first.run_id}
    day.correct()
    again = world.run(D)
    assert again.status == "balanced"
    waiting = queued(fp)
    assert {run for run, _, _ in waiting} == {again.run_id}  # the stale settles are gone
    assert {state for _, _, state in waiting} == {"settled"}
    assert {rid for _, rid, _ in waiting} == {day.a.id, day.c.id, day.f.id, day.q.id}
    apply_fails.undo()
    applied = world.recon.apply_moves()
    assert applied.unsettled == [] and not applied.refused and not applied.kept
    assert states(fp, day.a, day.b, day.c, day.e, day.f, day.p, day.q) == [
        "settled", "paid", "settled", "issued", "settled", "partially_paid", "settled"]
    assert unsettle_entries(fp) == [] and queued(fp) == []


def test_a_move_back_survives_a_failed_apply_and_a_second_rerun(
        fp, world, day: Day, apply_fails) -> None:  # noqa: ANN001
    """The re-run's apply died with its move back queued: a further re-run (whose earlier
    matches no longer name b) still moves b back."""
    apply_fails.undo()
    world.run(D)
    day.correct()
    apply_fails.setattr(moves, "apply", lambda conn, now: 1 / 0)
    second = world.run(D)
    assert {(run, state) for run, _, state in queued(fp) if state == "unsettled"} == {
        (second.run_id, "unsettled")}
    assert states(fp, day.b) == ["settled"]
    apply_fails.undo()
    third = world.run(D)
    assert states(fp, day.b, day.e, day.p) == ["paid", "issued", "partially_paid"]
    assert {x["details"]["run_id"] for x in unsettle_entries(fp)} == {third.run_id}
    assert len(unsettle_entries(fp)) == 3 and queued(fp) == []


def test_a_reference_another_day_pays_meanwhile_stays_settled(
        fp, world, day: Day, apply_fails) -> None:  # noqa: ANN001
    """b's move back is queued (its apply died); then D2's money pays b: the apply keeps
    b settled — not an error — and writes no audit entry for it."""
    apply_fails.undo()
    world.run(D)
    day.correct()
    apply_fails.setattr(moves, "apply", lambda conn, now: 1 / 0)
    rerun = world.run(D)
    world.statement(D2, [(10_000, day.b.code, at(D2, 9))])
    assert world.run(D2).matched == 10_000
    apply_fails.undo()
    applied = world.recon.apply_moves()
    assert applied.kept == {rerun.run_id: 1} and not applied.refused
    assert {u.code for u in applied.unsettled} == {day.e.code, day.p.code}
    assert applied.unsettled_by_run == {rerun.run_id: sorted(
        [day.e.code, day.p.code], key=lambda c: row(fp, c).id)}
    assert states(fp, day.b, day.e, day.p) == ["settled", "issued", "partially_paid"]
    assert {x["object_id"] for x in unsettle_entries(fp)} == {day.e.code, day.p.code}
    assert fp.audit.verify().ok


def test_a_rerun_does_not_move_back_what_another_day_pays(
        fp, world, day: Day, apply_fails) -> None:  # noqa: ANN001
    """As above, but the day is re-run once more after D2 paid b: the re-run sees D2's
    match and does not ask again; the stale move back goes with its run's other moves."""
    apply_fails.undo()
    world.run(D)
    day.correct()
    apply_fails.setattr(moves, "apply", lambda conn, now: 1 / 0)
    world.run(D)
    world.statement(D2, [(10_000, day.b.code, at(D2, 9))])
    world.run(D2)
    apply_fails.undo()
    last = world.run(D)
    assert states(fp, day.b, day.e, day.p) == ["settled", "issued", "partially_paid"]
    assert {x["details"]["run_id"] for x in unsettle_entries(fp)} == {last.run_id}
    assert {x["object_id"] for x in unsettle_entries(fp)} == {day.e.code, day.p.code}
    assert queued(fp) == []


# -- migration 0010 -----------------------------------------------------------------------------
def _queue_one(fp, state: str) -> None:  # noqa: ANN001
    with fp.db.session() as s:
        run = s.scalar(text("SELECT MAX(id) FROM recon_runs"))
        s.execute(text("INSERT INTO recon_reference_moves (run_id, reference_id, state, "
                       "allocated, paid_at) VALUES (:run, 1, :state, 0, :at)"),
                  {"run": run, "state": state, "at": datetime(2025, 12, 1, 2, tzinfo=UTC)})


def test_migration_0010_up_and_down(empty_url: str, sealer, monkeypatch) -> None:  # noqa: ANN001, F811
    from feepay.api import FeePay
    from feepay.config import Settings
    from feepay.demo_data import seed
    from feepay.storage.engine import Database

    db = Database(empty_url)
    db.upgrade()
    head = db.current_revision()
    fp = FeePay(db, sealer, Settings.from_env(empty_url))
    try:
        world = World(fp, seed(fp))
        day = Day(fp, world)
        world.run(D)
        day.correct()
        monkeypatch.setattr(moves, "apply", lambda conn, now: 1 / 0)
        world.run(D)                                   # three moves back stay queued
        with fp.db.session() as s:
            waiting = s.scalar(select(func.count()).select_from(ReconReferenceMoveRow))
        assert waiting == 7
        with pytest.raises(RuntimeError, match="3 reference move.s. back from settled"):
            db.downgrade("0009")
        assert db.current_revision() == head           # nothing was undone, later ones too
        monkeypatch.undo()
        assert len(world.recon.apply_moves().unsettled) == 3

        db.downgrade("0009")
        _queue_one(fp, "settled")                      # the old constraint still takes these
        with pytest.raises(IntegrityError):
            _queue_one(fp, "unsettled")
        db.upgrade()
        assert db.current_revision() == head
        _queue_one(fp, "unsettled")
        with fp.db.session() as s:
            kept = sorted(s.scalars(select(ReconReferenceMoveRow.state)))
        assert kept == ["settled", "unsettled"]        # the table's rows survive the copy
        with pytest.raises(IntegrityError):
            _queue_one(fp, "paid")
    finally:
        fp.close()
