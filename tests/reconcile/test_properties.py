"""Invariants of the engine, checked on generated days (hypothesis).

* conservation of money: every đồng of every statement line of the day ends up in
  exactly one match allocation or one mismatch — per line, not just in total;
* determinism: the same input gives the same result (re-running a day);
* order independence: shuffling lines, callbacks, references, batches and earlier-day
  summaries changes nothing.

The runner-level counterparts (re-run idempotence against a real database, resolutions
kept) are in test_runner_properties.py.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from feepay.money import VN_TZ
from reconcile.engine import reconcile_day
from reconcile.models import (
    Batch,
    BatchTxn,
    Carried,
    DayInput,
    Expected,
    ManualLink,
    Policy,
    Prior,
    Reported,
    Settled,
)
from reconcile.testing import code_for, typo_of

DAY = date(2025, 12, 1)
FAR = datetime(2099, 1, 1, tzinfo=VN_TZ)
DUES = [2_000, 3_000, 8_000, 10_000, 50_000, 100_000]
NOISE = ["MBVCB.4530998360.029552.NGUYEN VAN X chuyen tien", "CT DEN:523320101151",
         "nop le phi ho so", "", "VNPAY TT"]


def at(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time(0), VN_TZ) + timedelta(seconds=seconds)


@st.composite
def references(draw: st.DrawFn) -> list[Expected]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        cancelled = draw(st.booleans()) and draw(st.booleans())
        expires = draw(st.sampled_from([FAR, FAR, at(DAY, 8 * 3600), at(DAY, -1)]))
        out.append(Expected(i + 1, code_for(f"R{i}"), draw(st.sampled_from([1, 1, 1, 2])),
                            draw(st.sampled_from(DUES)), expires,
                            "cancelled" if cancelled else "issued",
                            at(DAY, 7 * 3600) if cancelled else None))
    return out


@st.composite
def memo_and_amount(draw: st.DrawFn, refs: list[Expected]) -> tuple[str, int]:
    chosen = draw(st.lists(st.sampled_from(refs), max_size=2, unique_by=lambda r: r.code))
    parts = [r.code if draw(st.booleans()) else r.code.lower() for r in chosen]
    if draw(st.booleans()) and draw(st.booleans()):
        parts.append(typo_of(draw(st.sampled_from(refs)).code))
    if draw(st.booleans()) and draw(st.booleans()):
        parts.append(code_for("NOBODY"))
    parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(NOISE)))
    due = sum(r.amount_due for r in chosen) or draw(st.sampled_from(DUES))
    amount = draw(st.sampled_from([due, due, due // 2, due * 2, due + 1000,
                                   draw(st.integers(0, 200_000))]))
    return " ".join(parts), amount


@st.composite
def day_inputs(draw: st.DrawFn) -> DayInput:
    refs = draw(references())
    lines = []
    for i in range(draw(st.integers(0, 10))):
        memo, amount = draw(memo_and_amount(refs))
        # mostly today; some the evening before, posted today (a late posting)
        value_at = draw(st.one_of(st.none(), st.integers(-4 * 3600, 86_399).map(
            lambda s: at(DAY, s))))
        lines.append(Settled(100 + i, DAY, amount, memo, value_at,
                             draw(st.sampled_from([None, None, "FT1", "FT2"]))))
    events = []
    for i in range(draw(st.integers(0, 6))):
        r = draw(st.sampled_from(refs))
        events.append(Reported(500 + i, draw(st.sampled_from(["sepay", "vnpay", "momo"])),
                               f"T{i}", draw(st.sampled_from([r.amount_due, r.amount_due // 2])),
                               at(DAY - timedelta(days=draw(st.integers(0, 4))),
                                  draw(st.integers(0, 86_399))),
                               r.code if draw(st.integers(0, 4)) else None,
                               draw(st.sampled_from([None, "FT1", "FT3"]))))
    batches = []
    if draw(st.booleans()):
        txns = tuple(BatchTxn(f"T{i}", r.amount_due, 100, r.amount_due - 100,
                              r.code if draw(st.booleans()) else None)
                     for i, r in enumerate(draw(st.lists(st.sampled_from(refs), min_size=1,
                                                         max_size=3))))
        total = sum(x.net for x in txns) + draw(st.sampled_from([0, 0, 0, 500]))
        batches.append(Batch("VNP-BATCH-77", "vnpay", DAY, total, txns))
        lines.append(Settled(90, DAY, draw(st.sampled_from([total, total, total + 1])),
                             draw(st.sampled_from(["VNPAY TT VNP-BATCH-77", "VNPAY TT"]))))
    prior = [Prior(r.code, draw(st.sampled_from([r.amount_due, r.amount_due // 2])),
                   draw(st.booleans()))
             for r in refs if draw(st.integers(0, 3)) == 0]
    carried = [Carried(Settled(50 + i, DAY - timedelta(days=1), r.amount_due // 3, r.code),
                       r.code, f"underpaid:L{50 + i}")
               for i, r in enumerate(refs) if draw(st.integers(0, 4)) == 0]
    if draw(st.integers(0, 3)) == 0:  # parts of an earlier day's gateway credit
        owners = draw(st.lists(st.sampled_from(refs), min_size=1, max_size=2,
                               unique_by=lambda r: r.code))
        parts = [BatchTxn(f"C{i}", r.amount_due // 2, 100, r.amount_due // 2 - 100, r.code)
                 for i, r in enumerate(owners)]
        credit = Settled(80, DAY - timedelta(days=1), sum(t.net for t in parts),
                         "VNPAY TT VNP-OLD-1")
        carried += [Carried(credit, str(t.reference), f"underpaid:BVNP-OLD-1:T{t.provider_txn_id}",
                            batch_id="VNP-OLD-1", txn=t) for t in parts]
    links = [ManualLink(line.id, draw(st.sampled_from(refs)).code)
             for line in lines if line.id != 90 and draw(st.integers(0, 9)) == 0]
    if batches and draw(st.integers(0, 3)) == 0:  # a person said which line is the batch
        links.append(ManualLink(draw(st.sampled_from([90, 100])), batch="VNP-BATCH-77"))
    policy = Policy(cutoff=draw(st.sampled_from([None, None, time(15, 30), time(16, 0)])))
    return DayInput(1, DAY, tuple(lines), tuple(events), tuple(batches), tuple(refs),
                    tuple(prior), tuple(carried), tuple(links), policy)


@settings(max_examples=300, deadline=None)
@given(day_inputs())
def test_money_is_conserved_line_by_line(inp: DayInput) -> None:
    result = reconcile_day(inp)
    placed: dict[int, int] = defaultdict(int)
    parts: dict[tuple[int, str | None], int] = defaultdict(int)  # (line, gateway txn)
    for m in result.matches:
        for a in m.allocations:
            if a.line_id is not None:
                placed[a.line_id] += a.amount
                parts[(a.line_id, a.txn_id)] += a.amount
    for mm in result.mismatches:
        if mm.line_id is not None:
            placed[mm.line_id] += mm.amount
            parts[(mm.line_id, mm.evidence.get("txn_id"))] += mm.amount
            assert mm.amount >= 0
        # a mismatch is raised no earlier than its line's day: the loader's look-ups by
        # (account, day) rely on it (see reconcile.loader._links)
        assert mm.line_day is None or mm.line_day <= inp.day
    for line in inp.lines:
        assert placed[line.id] == line.amount, (line, result)
    for c in inp.carried:  # an earlier day's part-payment: untouched or fully placed
        if c.txn is None:
            assert placed[c.line.id] in (0, c.line.amount)
        else:  # a gateway transaction's part: its own net, never the batch's credit
            assert parts[(c.line.id, c.txn.provider_txn_id)] in (0, c.txn.net)
    assert result.credits == sum(x.amount for x in inp.lines) == result.matched + result.held


@settings(max_examples=50, deadline=None)
@given(day_inputs())
def test_same_input_same_result(inp: DayInput) -> None:
    assert reconcile_day(inp) == reconcile_day(inp)


@settings(max_examples=200, deadline=None)
@given(day_inputs(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(inp: DayInput, rnd) -> None:  # noqa: ANN001
    def shuffled(items: tuple) -> tuple:
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    permuted = DayInput(inp.account_id, inp.day, shuffled(inp.lines), shuffled(inp.events),
                        shuffled(inp.batches), shuffled(inp.references), shuffled(inp.prior),
                        shuffled(inp.carried), shuffled(inp.links), inp.policy)
    assert reconcile_day(permuted) == reconcile_day(inp)


@settings(max_examples=100, deadline=None)
@given(day_inputs())
def test_references_move_only_on_their_own_account(inp: DayInput) -> None:
    result = reconcile_day(inp)
    own = {r.code for r in inp.references if r.account_id == inp.account_id}
    cancelled = {r.code for r in inp.references if r.state == "cancelled"}
    for u in result.updates:
        assert u.code in own
        if u.state == "settled":
            assert u.code not in cancelled or any(
                a.code == u.code for m in result.matches if m.rule.value == "manual"
                for a in m.allocations)


def _full_scans(rule):  # noqa: ANN001, ANN202
    """A rule walking every open payment, as the rules were first written: the reference
    implementation for the book's ``doubtful()`` and ``codeless()`` indexes."""
    def run(book) -> None:  # noqa: ANN001
        book.doubtful = book.open_payments
        book.codeless = lambda: [p for p in book.open_payments(today_only=True)
                                 if not p.codes]
        try:
            rule(book)
        finally:
            del book.doubtful, book.codeless
    return run


@settings(max_examples=300, deadline=None)
@given(day_inputs())
def test_rules_see_every_payment_they_could_take(inp: DayInput) -> None:
    from reconcile.rules import RULES

    assert reconcile_day(inp) == reconcile_day(inp, tuple(_full_scans(r) for r in RULES))
