"""``link`` pays a reference what it still owes, never takes money from a match, and never
counts money on another collection account (rule ``manual_links`` + resolution checks).

Each test drives a real database through the real services; a refused link must leave the
mismatch open and no trace in the audit log or the resolutions.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from feepay.exceptions import NotFound, ValidationError
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow
from reconcile.engine import reconcile_day
from reconcile.models import Policy
from reconcile.resolution import Resolutions
from reconcile.testing import build_input, code_for
from tests.reconcile.conftest import at

D0 = date(2025, 11, 30)
D1 = date(2025, 12, 1)
D2 = date(2025, 12, 2)
WHO = "kbnn.demo"


def only(res: Resolutions, category: str):  # noqa: ANN201
    (m,) = res.list(category=category)
    return m


def state(fp, code: str) -> str:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == code))


def matched_on_line(fp, line_id: int) -> list[tuple[str, int]]:  # noqa: ANN001
    """(rule, amount) of every stored match of the line."""
    with fp.db.session() as s:
        return [(r.rule, r.amount) for r in s.execute(
            select(ReconMatchRow.rule, ReconMatchRow.amount)
            .where(ReconMatchRow.line_id == line_id).order_by(ReconMatchRow.id))]


def matches_of(fp, code: str) -> int:  # noqa: ANN001
    """Money matched to ``code`` on any account, as ``_prior`` sums it."""
    with fp.db.session() as s:
        ref_id = s.scalar(select(ReferenceRow.id).where(ReferenceRow.code == code))
        return s.scalar(select(func.coalesce(func.sum(ReconMatchRow.amount), 0))
                        .where(ReconMatchRow.reference_id == ref_id))


def assert_refused_left_nothing(fp, res: Resolutions, mismatch_id: int) -> None:  # noqa: ANN001
    m = res.get(mismatch_id)
    assert m.status == "open" and m.resolution is None and m.linked_reference is None
    assert res.history(mismatch_id) == []
    assert fp.audit.entries(object_type="mismatch", object_id=str(mismatch_id)) == []


def test_link_pays_what_is_owed_and_holds_the_excess_for_refund(fp, world) -> None:  # noqa: ANN001
    a = world.ref()                                       # owes 10.000
    world.statement(D1, [(150_000, "NOP TIEN HO SO", at(D1, 9))])
    world.run(D1)
    res = Resolutions(fp)
    suspense = only(res, "unknown_reference")
    done = res.link(suspense.id, a.code, reason="người nộp xác nhận", actor=WHO)
    rerun = done.rerun
    assert rerun.status == "balanced" and rerun.statement_credits == 150_000
    assert (rerun.matched, rerun.held) == (10_000, 140_000)
    assert matched_on_line(fp, suspense.line_id) == [("manual", 10_000)]
    assert state(fp, a.code) == "settled"
    assert done.mismatch.status == "resolved" and done.mismatch.linked_reference == a.code
    excess = only(res, "overpaid")                        # the 140.000 is still in review
    assert excess.key == f"overpaid:L{suspense.line_id}:{a.code}"
    assert (excess.amount, excess.reference, excess.expected_amount) == (140_000, a.code,
                                                                         10_000)
    assert excess.evidence["via"] == "link" and excess.evidence["linked_reference"] == a.code
    assert excess.evidence["paid"] == 10_000
    # the excess shares its line with the manual match: it can only be refunded
    with pytest.raises(ValidationError, match="refund_due"):
        res.link(excess.id, world.ref().code, reason="x", actor=WHO)
    assert_refused_left_nothing(fp, res, excess.id)
    res.refund_due(excess.id, reason="hoàn trả phần thừa", actor=WHO)
    assert res.list() == []
    again = world.run(D1)                                 # the decision survives a re-run
    assert again.digest == rerun.digest and res.list() == []
    assert (again.matched, again.held) == (10_000, 140_000)


def test_link_to_a_reference_paid_in_full_holds_the_line_as_duplicate(fp, world) -> None:  # noqa: ANN001
    a, b, c = world.ref(), world.ref(), world.ref()
    world.statement(D0, [(10_000, b.code, at(D0, 9))])   # b paid in full the day before
    world.run(D0)
    world.statement(D1, [(10_000, a.code, at(D1, 9)), (10_000, a.code, at(D1, 11))])
    world.run(D1)
    res = Resolutions(fp)
    twice = only(res, "duplicate")                        # a paid twice
    done = res.link(twice.id, b.code, reason="người nộp ghi nhầm mã", actor=WHO)
    assert done.rerun.status == "balanced" and done.rerun.statement_credits == 20_000
    assert (done.rerun.matched, done.rerun.held) == (10_000, 10_000)
    assert matched_on_line(fp, twice.line_id) == []       # b is not paid twice
    assert matches_of(fp, b.code) == 10_000
    held = only(res, "duplicate")                         # not absorbed by the resolved row
    assert held.id != twice.id and held.key == f"duplicate:L{twice.line_id}:{b.code}"
    assert (held.amount, held.reference) == (10_000, b.code)
    assert held.evidence["via"] == "link" and held.evidence["paid_earlier"] == 10_000
    assert state(fp, a.code) == state(fp, b.code) == "settled"
    # the line is linked once; a second link would compete with the first
    with pytest.raises(ValidationError, match="already linked"):
        res.link(held.id, c.code, reason="x", actor=WHO)
    assert_refused_left_nothing(fp, res, held.id)
    assert state(fp, c.code) == "issued" and matches_of(fp, c.code) == 0


def test_an_overpaid_line_cannot_be_linked_away_from_its_match(fp, world) -> None:  # noqa: ANN001
    a, b = world.ref(), world.ref()
    world.statement(D1, [(15_000, a.code, at(D1, 9))])
    first = world.run(D1)
    res = Resolutions(fp)
    excess = only(res, "overpaid")
    with pytest.raises(ValidationError, match="already matched.*refund_due"):
        res.link(excess.id, b.code, reason="phần thừa cho hồ sơ khác", actor=WHO)
    assert_refused_left_nothing(fp, res, excess.id)
    assert matched_on_line(fp, excess.line_id) == [("over", 10_000)]
    assert state(fp, a.code) == "settled" and state(fp, b.code) == "issued"
    assert world.run(D1).digest == first.digest           # nothing changed


def test_money_of_another_account_is_transferred_not_linked(fp, world) -> None:  # noqa: ANN001
    commune = world.demo.communes[0]
    theirs = world.demo.accounts[commune]
    b = world.ref(unit=commune)                           # owes 10.000 to the commune
    world.statement(D1, [(10_000, b.code, at(D1, 9)), (10_000, "KHONG MA", at(D1, 10))])
    world.run(D1)
    res = Resolutions(fp)
    wrong, suspense = only(res, "wrong_account"), only(res, "unknown_reference")
    for m in (wrong, suspense):
        with pytest.raises(ValidationError, match="transferred to the right unit's account"):
            res.link(m.id, b.code, reason="x", actor=WHO)
        assert_refused_left_nothing(fp, res, m.id)
    assert matches_of(fp, b.code) == 0 and state(fp, b.code) == "issued"
    # what to do instead: transfer it out, then the commune's statement matches it
    res.refund_due(wrong.id, reason="đã chuyển sang TK đơn vị đúng, UNC FT25335", actor=WHO)
    world.statement(D2, [(10_000, f"CHUYEN TRA {b.code}", at(D2, 9))], account=theirs)
    (outcome,) = world.recon.run(D2, theirs)
    assert outcome.status == "balanced" and outcome.matched == 10_000 and outcome.held == 0
    assert res.list(account_id=theirs) == []              # no false duplicate
    assert state(fp, b.code) == "settled" and matches_of(fp, b.code) == 10_000


def test_a_stored_link_to_another_account_is_held_not_matched() -> None:
    """A link made before resolution refused them: the engine holds the line again."""
    inp = build_input({
        "day": "2025-12-01", "references": [{"code": "@B", "amount_due": 10_000,
                                             "account": 2}],
        "lines": [{"id": 1, "amount": 10_000, "memo": "@B"}],
        "links": [{"line_id": 1, "code": "@B"}]})
    result = reconcile_day(inp)
    assert result.matches == () and result.updates == ()
    (held,) = result.mismatches
    assert (held.category.value, held.amount, held.key) == (
        "wrong_account", 10_000, f"wrong_account:L1:{code_for('B')}")
    assert held.evidence["via"] == "link" and result.credits == result.held == 10_000


def test_linking_a_part_payment_to_its_reference_records_it_not_as_full(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(6_000, a.code, at(D1, 9))])
    world.run(D1)
    res = Resolutions(fp)
    part = only(res, "underpaid")
    done = res.link(part.id, a.code, reason="ghi nhận phần đã nộp", actor=WHO)
    assert (done.rerun.matched, done.rerun.held) == (6_000, 0)
    assert matched_on_line(fp, part.line_id) == [("manual", 6_000)]
    assert state(fp, a.code) == "partially_paid"          # a link never waives the rest
    world.statement(D2, [(4_000, a.code, at(D2, 9))])     # the rest, whenever it comes
    out = world.run(D2)
    assert (out.matched, out.held) == (4_000, 0) and state(fp, a.code) == "settled"
    assert res.list() == []


# -- an ambiguous gateway credit, linked to its batch ----------------------------------------
def _two_credits_fit_one_batch(world):  # noqa: ANN001, ANN202
    """Two VNPAY payouts of the same amount, memos without the batch id: both fit B1."""
    a = world.ref()                                         # 10.000
    world.settlement("VNP-AMB-0001", D1, [("T1", a.code, 10_000, 200)])
    world.statement(D1, [(9_800, "VNPAY TT", at(D1, 10)), (9_800, "VNPAY TT", at(D1, 11))])
    world.run(D1)
    return a


def test_an_ambiguous_gateway_credit_is_linked_to_its_batch(fp, world) -> None:  # noqa: ANN001
    a = _two_credits_fit_one_batch(world)
    res = Resolutions(fp)
    first, second = res.list(category="ambiguous")
    assert (first.batch_id, second.batch_id) == ("VNP-AMB-0001", "VNP-AMB-0001")
    done = res.link_batch(second.id, "VNP-AMB-0001", reason="VNPAY xác nhận khoản 11:00",
                          actor=WHO)
    assert done.mismatch.linked_batch == "VNP-AMB-0001"
    assert done.rerun.status == "balanced" and done.rerun.matched == 9_800
    assert matched_on_line(fp, second.line_id) == [("gateway", 9_800)]
    assert state(fp, a.code) == "settled"
    (other,) = [m for m in res.list() if m.line_id == first.line_id]
    assert other.category == "unknown_reference" and other.amount == 9_800
    assert [e["details"]["batch"] for e in fp.audit.entries(object_type="mismatch")] == [
        "VNP-AMB-0001"]
    assert world.run(D1).digest == done.rerun.digest   # the link keeps applying


@pytest.mark.parametrize("case", ["not_ambiguous", "unknown_batch", "with_reference",
                                  "too_late"])
def test_a_batch_link_that_does_not_fit_is_refused(fp, world, case) -> None:  # noqa: ANN001
    a = _two_credits_fit_one_batch(world)
    world.statement(D1, [(5_000, "KHONG RO", at(D1, 12))])
    world.run(D1)
    res = Resolutions(fp)
    target = res.list(category="unknown_reference")[0] if case == "not_ambiguous" else \
        res.list(category="ambiguous")[0]
    batch, reference = "VNP-AMB-0001", None
    if case == "unknown_batch":
        batch = "VNP-NONE"
    elif case == "with_reference":
        reference = a.code
    elif case == "too_late":
        world.settlement("VNP-OLD-0001", date(2025, 11, 20), [("T9", None, 1_000, 0)])
        batch = "VNP-OLD-0001"
    kind = NotFound if case == "unknown_batch" else ValidationError
    with pytest.raises(kind) as refused:
        res.resolve(target.id, "link", reason="thử", actor=WHO, reference=reference,
                    batch=batch)
    assert "batch" in str(refused.value)
    assert res.get(target.id).status == "open"
    assert fp.audit.entries(object_type="mismatch") == []


def test_a_batch_link_follows_the_reconcilers_batch_lag(fp, world) -> None:  # noqa: ANN001
    """The lag a batch's credit may post after its day is the reconciler's policy, not a
    default: a reviewer cannot link what the engine of that policy would never place."""
    a = world.ref()
    world.settlement("VNP-LAG-0001", D1, [("T1", a.code, 10_000, 200)])
    world.statement(D2, [(9_800, "VNPAY TT", at(D2, 10)), (9_800, "VNPAY TT", at(D2, 11))])
    world.run(D2)                                          # default lag: 3 days
    (amb, _) = Resolutions(fp).list(category="ambiguous")
    strict = Resolutions(fp, Policy(batch_lag_days=0))
    with pytest.raises(ValidationError, match="up to 0 days after"):
        strict.link_batch(amb.id, "VNP-LAG-0001", reason="thử", actor=WHO)
    assert strict.get(amb.id).status == "open"
    done = Resolutions(fp).link_batch(amb.id, "VNP-LAG-0001", reason="VNPAY xác nhận",
                                      actor=WHO)
    assert done.rerun.status == "balanced" and done.rerun.matched == 9_800


def test_a_batch_another_day_placed_is_not_linked_again(fp, world) -> None:  # noqa: ANN001
    """D0's line fits two batches (ambiguous); D1 matches one of them to its own line:
    linking D0's line to that batch would place its money twice."""
    a, b = world.ref(), world.ref()
    world.settlement("VNP000111", D1, [("T1", a.code, 10_000, 0)])
    world.settlement("VNP000222", D1, [("T2", b.code, 10_000, 0)])
    world.statement(D1, [(10_000, "VNPAY quyet toan", at(D1, 9))])
    world.run(D1)
    world.statement(D2, [(10_000, "VNPAY quyet toan", at(D2, 9))])
    world.run(D2)
    res = Resolutions(fp)
    (amb,) = res.list(category="ambiguous")
    assert amb.day == D1 and sorted(amb.evidence["batches"]) == ["VNP000111", "VNP000222"]
    # the day held the first candidate; the next day matched the other to its own line
    other = ({"VNP000111", "VNP000222"} - {amb.batch_id}).pop()
    with pytest.raises(ValidationError, match="already placed on 02/12/2025"):
        res.link_batch(amb.id, other, reason="thử", actor=WHO)
    world.settlement("VNP000333", D1, [("T3", a.code, 10_000, 0)])
    with pytest.raises(ValidationError, match="not one this line fits"):
        res.link_batch(amb.id, "VNP000333", reason="thử", actor=WHO)
    assert res.get(amb.id).status == "open"
    done = res.link_batch(amb.id, amb.batch_id, reason="VNPAY xác nhận", actor=WHO)
    assert done.rerun.status == "balanced" and done.rerun.matched == 10_000


def test_a_reference_a_later_day_paid_is_not_linked(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, "KHONG RO", at(D1, 9))])
    world.run(D1)
    world.statement(D2, [(10_000, a.code, at(D2, 9))])
    world.run(D2)
    res = Resolutions(fp)
    (m,) = res.list(category="unknown_reference")
    with pytest.raises(ValidationError, match="paid by money matched on 02/12/2025"):
        res.link(m.id, a.code, reason="thử", actor=WHO)
    assert res.get(m.id).status == "open" and fp.audit.entries(object_type="mismatch") == []
