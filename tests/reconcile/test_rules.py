"""Each rule alone: build a book, apply one rule, look at what it decided.

The golden scenarios exercise the rules together; these pin what each small function does
by itself (and what it leaves for the rules after it).
"""

from __future__ import annotations

from datetime import date, datetime, time

from feepay.money import VN_TZ
from reconcile import rules
from reconcile.book import Book
from reconcile.models import (
    Batch,
    BatchTxn,
    Carried,
    Category,
    DayInput,
    Expected,
    ManualLink,
    Prior,
    Reported,
    Rule,
    Settled,
)
from reconcile.testing import code_for, typo_of

DAY = date(2025, 12, 1)
FAR = datetime(2099, 1, 1, tzinfo=VN_TZ)
A, B, C = code_for("A"), code_for("B"), code_for("C")


def t(hh: int, mm: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm), VN_TZ)


def ref(code: str, due: int, account: int = 1, **kw) -> Expected:  # noqa: ANN003
    return Expected(hash(code) % 1000, code, account, due, kw.pop("expires_at", FAR), **kw)


def line(i: int, amount: int, memo: str, at: datetime | None = None, **kw) -> Settled:  # noqa: ANN003
    return Settled(i, kw.pop("posted", DAY), amount, memo, at, **kw)


def book(*, refs=(), lines=(), events=(), **kw) -> Book:  # noqa: ANN001, ANN003
    return Book(DayInput(1, DAY, tuple(lines), tuple(events), references=tuple(refs), **kw))


def decided(b: Book) -> tuple[list, list]:
    return ([(m.rule.value, [(a.line_id, a.code, a.amount) for a in m.allocations])
             for m in b.matches],
            [(m.category.value, m.line_id, m.amount) for m in b.mismatches])


def test_manual_link_pays_what_is_owed_and_holds_the_rest() -> None:
    b = book(refs=[ref(A, 5000)], lines=[line(1, 7000, "no code")],
             links=(ManualLink(1, A),))
    rules.manual_links(b)
    assert decided(b) == ([("manual", [(1, A, 5000)])], [("overpaid", 1, 2000)])


def test_manual_link_takes_the_whole_line_when_it_is_owed() -> None:
    b = book(refs=[ref(A, 7000)], lines=[line(1, 7000, "no code")],
             links=(ManualLink(1, A),))
    rules.manual_links(b)
    assert decided(b) == ([("manual", [(1, A, 7000)])], [])


def test_exact_needs_the_amount_still_due() -> None:
    b = book(refs=[ref(A, 5000), ref(B, 5000)], prior=(Prior(B, 2000),),
             lines=[line(1, 5000, A), line(2, 5000, B), line(3, 3000, B)])
    rules.exact(b)
    assert decided(b) == ([("exact", [(1, A, 5000)]), ("exact", [(3, B, 3000)])],
                          [("money_no_callback", 1, 0), ("money_no_callback", 3, 0)])
    assert b.line(2).is_open  # left for duplicate


def test_exact_pairs_the_callback_with_the_same_bank_ref() -> None:
    ev = [Reported(10, "sepay", "x", 5000, t(9), A, "FT1"),
          Reported(11, "sepay", "y", 5000, t(8), A, "FT2")]
    b = book(refs=[ref(A, 5000)], lines=[line(1, 5000, A, t(9), bank_ref="FT1")], events=ev)
    rules.exact(b)
    assert b.matches[0].allocations[0].event_id == 10 and 11 in b.free


def test_multi_only_when_the_amount_is_the_sum() -> None:
    b = book(refs=[ref(A, 5000), ref(B, 3000), ref(C, 1000)],
             lines=[line(1, 8000, f"{A} {B}"), line(2, 5000, f"{A} {C}")])
    rules.multi(b)
    assert decided(b)[0] == [("multi", [(1, A, 5000), (1, B, 3000)])]
    assert b.line(2).is_open


def test_split_sums_todays_and_carried_parts() -> None:
    old = line(7, 6000, A, t(9, day=date(2025, 11, 30)), posted=date(2025, 11, 30))
    b = book(refs=[ref(A, 10_000)], lines=[line(1, 4000, A, t(10))],
             carried=(Carried(old, A, "underpaid:L7"),))
    rules.split(b)
    assert decided(b)[0] == [("split", [(7, A, 6000), (1, A, 4000)])]
    assert "underpaid:L7" in b.clears


def test_over_matches_the_due_and_holds_the_excess() -> None:
    b = book(refs=[ref(A, 10_000)], lines=[line(1, 6000, A, t(9)), line(2, 6000, A, t(10))])
    rules.over(b)
    assert decided(b) == ([("over", [(1, A, 6000), (2, A, 4000)])],
                          [("money_no_callback", 1, 0), ("overpaid", 2, 2000)])


def test_duplicate_after_the_reference_is_paid() -> None:
    b = book(refs=[ref(A, 5000)], prior=(Prior(A, 5000, True),), lines=[line(1, 5000, A)])
    rules.duplicate(b)
    assert decided(b) == ([], [("duplicate", 1, 5000)])


def test_underpaid_holds_todays_part_only() -> None:
    old = line(7, 1000, A, posted=date(2025, 11, 30))
    b = book(refs=[ref(A, 10_000)], lines=[line(1, 2000, A)],
             carried=(Carried(old, A, "underpaid:L7"),))
    rules.underpaid(b)
    assert decided(b) == ([], [("underpaid", 1, 2000)])
    assert b.line(7).is_open and A in b.partial


def test_wrong_account_and_expired_are_gatekeepers() -> None:
    b = book(refs=[ref(A, 5000, account=2), ref(B, 5000, expires_at=t(8)),
                   ref(C, 5000, state="cancelled", cancelled_at=t(7))],
             lines=[line(1, 5000, A, t(9)), line(2, 5000, B, t(9)), line(3, 5000, C, t(9))])
    rules.wrong_account(b)
    rules.expired_or_cancelled(b)
    assert decided(b)[1] == [("wrong_account", 1, 5000), ("expired_or_cancelled", 2, 5000),
                             ("expired_or_cancelled", 3, 5000)]


def test_gateway_splits_a_batch_credit_into_its_transactions() -> None:
    batch = Batch("VNP-20251201", "vnpay", DAY, 14_780, (
        BatchTxn("1", 10_000, 110, 9_890, A), BatchTxn("2", 5_000, 110, 4_890, B)))
    b = book(refs=[ref(A, 10_000), ref(B, 5_000)],
             lines=[line(1, 14_780, "VNPAY TT VNP-20251201")], batches=(batch,),
             events=[Reported(10, "vnpay", "1", 10_000, t(8), A)])
    rules.gateway(b)
    txns = [p for p in b.payments if p.txn_id]
    assert [(p.txn_id, p.money, p.cover, p.codes, p.event_id) for p in txns] == [
        ("1", 9_890, 10_000, (A,), 10), ("2", 4_890, 5_000, (B,), None)]
    rules.exact(b)
    assert decided(b)[0] == [("gateway", [(1, A, 9_890)]), ("gateway", [(1, B, 4_890)])]


def test_gateway_two_credits_for_one_batch_are_ambiguous() -> None:
    batch = Batch("B1", "vnpay", DAY, 5000, (BatchTxn("1", 5000, 0, 5000, A),))
    b = book(refs=[ref(A, 5000)], batches=(batch,),
             lines=[line(1, 5000, "VNPAY TT"), line(2, 5000, "VNPAY TT")])
    rules.gateway(b)
    assert [m.category for m in b.mismatches] == [Category.AMBIGUOUS] * 2


def test_gateway_a_person_links_the_ambiguous_credit_to_its_batch() -> None:
    """The reviewer says line 2 is batch B1: it is split into B1's transactions; line 1,
    no longer competing, is left for the rules after (no batch takes it)."""
    batch = Batch("B1", "vnpay", DAY, 5000, (BatchTxn("1", 5000, 0, 5000, A),))
    b = book(refs=[ref(A, 5000)], batches=(batch,),
             lines=[line(1, 5000, "VNPAY TT"), line(2, 5000, "VNPAY TT")],
             links=(ManualLink(2, batch="B1"),))
    rules.gateway(b)
    assert b.mismatches == [] and b.line(1).is_open and not b.line(2).is_open
    rules.exact(b)
    assert decided(b)[0] == [("gateway", [(2, A, 5000)])]


def test_gateway_a_link_to_a_batch_the_day_cannot_place_is_held_under_its_own_key() -> None:
    """The batch was placed by an earlier day (so it is not input): the line is held again,
    never under the resolved mismatch's key, and no other batch takes it."""
    batch = Batch("VNP-000009", "vnpay", DAY, 5000, (BatchTxn("9", 5000, 0, 5000, A),))
    b = book(refs=[ref(A, 5000)], batches=(batch,),
             lines=[line(1, 5000, "VNPAY TT")], links=(ManualLink(1, batch="VNP-GONE"),))
    rules.gateway(b)
    (held,) = b.mismatches
    assert (held.category, held.key, held.amount) == (Category.AMBIGUOUS,
                                                      "ambiguous:L1:VNP-GONE", 5000)
    assert held.evidence["linked_batch"] == "VNP-GONE" and b.matches == []


def test_gateway_a_linked_line_is_no_other_batchs_credit() -> None:
    """A line naming two batch ids fits both (ambiguous); linked to B2, it is B2's, and B1
    is left without a credit."""
    b1 = Batch("VNP-000001", "vnpay", DAY, 5000, (BatchTxn("1", 5000, 0, 5000, A),))
    b2 = Batch("VNP-000002", "vnpay", DAY, 5000, (BatchTxn("2", 5000, 0, 5000, B),))
    lines = [line(1, 5000, "VNPAY LO VNP-000001 VNP-000002")]
    unlinked = book(refs=[ref(A, 5000), ref(B, 5000)], batches=(b1, b2), lines=lines)
    rules.gateway(unlinked)
    assert [m.category for m in unlinked.mismatches] == [Category.AMBIGUOUS]
    linked = book(refs=[ref(A, 5000), ref(B, 5000)], batches=(b1, b2), lines=lines,
                  links=(ManualLink(1, batch="VNP-000002"),))
    rules.gateway(linked)
    rules.exact(linked)
    assert decided(linked)[0] == [("gateway", [(1, B, 5000)])]
    assert [m.category for m in linked.mismatches] == [Category.MONEY_NO_CALLBACK]


def test_callback_rule_takes_the_code_from_the_callback() -> None:
    b = book(refs=[ref(A, 5000)], lines=[line(1, 5000, "CHUYEN TIEN", t(9, 5))],
             events=[Reported(10, "momo", "m1", 5000, t(9), A)])
    rules.callback(b)
    p = b.line(1)
    assert p.codes == (A,) and p.event_id == 10 and p.via_callback
    rules.exact(b)
    assert b.matches[0].rule is Rule.CALLBACK


def test_callback_rule_pairs_by_bank_ref_a_line_without_time() -> None:
    b = book(refs=[ref(A, 5000), ref(B, 5000)],
             lines=[line(1, 5000, "CHUYEN TIEN", bank_ref="FT77"),
                    line(2, 5000, f"CK {B}", t(9), bank_ref="FT78")],
             events=[Reported(10, "sepay", "s1", 5000, t(8), A, "FT77"),
                     Reported(11, "sepay", "s2", 5000, t(9), B, "FT78"),
                     Reported(12, "sepay", "s3", 5000, t(8), A, "FT99")])
    rules.callback(b)
    p = b.line(1)
    assert p.codes == (A,) and p.event_id == 10 and p.via_callback
    assert b.free == {11, 12}  # a line with its code keeps its own callback for exact


def test_callback_rule_never_uses_time_for_a_near_miss() -> None:
    b = book(refs=[ref(A, 5000)], lines=[line(1, 5000, typo_of(A), t(9))],
             events=[Reported(10, "momo", "m1", 5000, t(9), A)])
    rules.callback(b)
    assert b.line(1).codes == () and 10 in b.free
    rules.unknown(b)
    assert b.mismatches[0].suggested == (A,)


def test_ambiguous_and_unknown_take_what_is_left() -> None:
    b = book(refs=[ref(A, 5000), ref(B, 3000)],
             lines=[line(1, 1000, f"{A} {B}"), line(2, 1000, "TIEN")])
    rules.ambiguous(b)
    rules.unknown(b)
    assert decided(b)[1] == [("ambiguous", 1, 1000), ("unknown_reference", 2, 1000)]


def test_late_callback_and_missing_money() -> None:
    old = date(2025, 11, 28)
    b = book(refs=[ref(A, 5000), ref(B, 5000)],
             prior=(Prior(A, 5000, False, ("money_no_callback:L3",)),),
             events=[Reported(10, "sepay", "s1", 5000, t(9, day=old), A),
                     Reported(11, "sepay", "s2", 5000, t(9, day=old), B),
                     Reported(12, "sepay", "s3", 5000, t(9), B)])
    rules.late_callbacks(b)
    rules.missing_money(b)
    assert [m.rule for m in b.matches] == [Rule.LATE_CALLBACK]
    assert "money_no_callback:L3" in b.clears
    assert [(m.category, m.event_id) for m in b.mismatches] == [(Category.PAID_NO_MONEY, 11)]
    assert b.pending_events == [12]
