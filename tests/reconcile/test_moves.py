"""Reference states queued by runs and applied once (reconcile.moves), on both databases."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, text

from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconReferenceMoveRow
from tests.reconcile.conftest import at

D1 = date(2025, 12, 1)
D2 = date(2025, 12, 2)


def ref_row(fp, code: str) -> ReferenceRow:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReferenceRow).where(ReferenceRow.code == code))


def queued(fp) -> int:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(func.count()).select_from(ReconReferenceMoveRow))


def test_runs_queue_and_one_apply_moves_every_account(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    b = world.ref(unit=world.demo.communes[0])
    world.callback(a.code, 10_000, at(D1, 9))
    world.statement(D1, [(10_000, a.code, at(D1, 9, 1))])
    world.statement(D1, [(10_000, b.code, at(D1, 10))],
                    account=world.demo.accounts[world.demo.communes[0]])
    outcomes = world.recon.run(D1)
    moved = {o.account_id: o.references_moved for o in outcomes}
    assert moved[world.account] == 1 and sum(moved.values()) == 2
    assert all(o.references_refused == 0 for o in outcomes)
    assert ref_row(fp, a.code).state == "settled" and ref_row(fp, b.code).state == "settled"
    assert ref_row(fp, b.code).amount_paid == 10_000 and ref_row(fp, b.code).paid_at == at(D1, 10)
    assert queued(fp) == 0


def test_moves_survive_a_failed_apply_and_the_next_run_applies_them(
        fp, world, apply_fails) -> None:  # noqa: ANN001
    a, b = world.ref(), world.ref()
    world.statement(D1, [(10_000, a.code, at(D1, 9))])
    out = world.run(D1)
    assert out.status == "balanced" and out.matched == 10_000
    assert ref_row(fp, a.code).state == "issued"      # the run committed, the move is queued
    assert queued(fp) == 1
    apply_fails.undo()
    world.statement(D2, [(10_000, b.code, at(D2, 9))])
    out2 = world.run(D2)                               # applies D1's move with its own
    assert ref_row(fp, a.code).state == "settled" and ref_row(fp, b.code).state == "settled"
    assert out2.references_moved == 1 and queued(fp) == 0


def _refuse_settling(fp, reference_id: int) -> list[str]:  # noqa: ANN001
    """A trigger that fails the settling of one reference, mid-statement; returns the
    statements that remove it (the PostgreSQL schema outlives the test)."""
    if fp.db.engine.dialect.name == "sqlite":
        create = [f"CREATE TRIGGER refuse_settling BEFORE UPDATE OF state ON "
                  f"payment_references WHEN NEW.id = {reference_id} AND NEW.state = 'settled' "
                  f"BEGIN SELECT RAISE(FAIL, 'refused by the test'); END"]
        drop = ["DROP TRIGGER refuse_settling"]
    else:
        create = ["CREATE OR REPLACE FUNCTION refuse_settling() RETURNS trigger "
                  "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                  f"CREATE TRIGGER refuse_settling BEFORE UPDATE ON payment_references FOR "
                  f"EACH ROW WHEN (NEW.id = {reference_id} AND NEW.state = 'settled') "
                  f"EXECUTE FUNCTION refuse_settling()"]
        drop = ["DROP TRIGGER IF EXISTS refuse_settling ON payment_references",
                "DROP FUNCTION IF EXISTS refuse_settling()"]
    with fp.db.engine.begin() as conn:
        for stmt in create:
            conn.execute(text(stmt))
    return drop


def test_an_apply_failing_mid_statement_changes_no_reference(
        fp, world, apply_fails) -> None:  # noqa: ANN001
    # a row failing mid-statement leaves the rows before it updated inside the
    # transaction (RAISE(FAIL) here; any failure under SQLite's UPDATE OR FAIL, which
    # keeps no statement journal): the apply's rollback must undo them
    a, b = world.ref(), world.ref()
    world.statement(D1, [(10_000, a.code, at(D1, 9)), (10_000, b.code, at(D1, 9, 1))])
    world.run(D1)
    apply_fails.undo()
    b_id = ref_row(fp, b.code).id
    assert ref_row(fp, a.code).id < b_id                # settled first, in id order
    drop = _refuse_settling(fp, b_id)
    try:
        with pytest.raises(Exception, match="refused by the test"):
            world.recon.apply_moves()
    finally:
        with fp.db.engine.begin() as conn:
            for stmt in drop:
                conn.execute(text(stmt))
    assert (ref_row(fp, a.code).state, ref_row(fp, b.code).state) == ("issued", "issued")
    assert queued(fp) == 2                               # kept for the next apply
    applied = world.recon.apply_moves()
    assert applied.moved == 2 and ref_row(fp, a.code).state == "settled" and queued(fp) == 0


def test_a_reference_cancelled_before_the_apply_stays_cancelled(
        fp, world, apply_fails) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, a.code, at(D1, 9))])   # money, no callback: still issued
    run_id = world.run(D1).run_id
    fp.references.cancel(a.code, "dossier withdrawn")
    apply_fails.undo()
    applied = world.recon.apply_moves()
    assert applied.refused == {run_id: 1} and applied.moved == 0
    assert ref_row(fp, a.code).state == "cancelled" and queued(fp) == 0


def test_part_paid_then_completed_ends_settled_in_one_apply(
        fp, world, apply_fails) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(4_000, f"{a.code} lan 1", at(D1, 9))])
    world.statement(D2, [(6_000, f"{a.code} lan 2", at(D2, 9))])
    world.run(D1)
    world.run(D2)
    assert ref_row(fp, a.code).state == "issued" and queued(fp) == 2
    apply_fails.undo()
    applied = world.recon.apply_moves()
    row = ref_row(fp, a.code)
    assert row.state == "settled" and row.amount_paid == 10_000
    assert row.paid_at == at(D1, 9)                      # the earliest payment
    assert applied.moved == 2 and not applied.refused


def test_rerun_moves_nothing_twice(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, a.code, at(D1, 9))])
    first = world.run(D1)
    settled_at = ref_row(fp, a.code).settled_at
    again = world.run(D1)
    assert (first.references_moved, again.references_moved) == (1, 1)
    assert again.references_refused == 0
    assert ref_row(fp, a.code).settled_at == settled_at  # the guard left it alone
    assert queued(fp) == 0
