"""Re-run idempotence against a real database (hypothesis): a day reconciled again gives
the same result — also after a person's links — and every resolution a person made
survives."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from feepay.exceptions import FeepayError
from feepay.money import VN_TZ
from feepay.storage.tables_reconcile import ReconMismatchRow
from reconcile.resolution import Resolutions

FEES = {"P-CT-02": 10_000, "LP-HT-01": 8_000, "P-CT-01": 2_000}
_days = itertools.count()


def _fresh_day() -> date:
    # 10 days apart: each example is outside the others' look-back window
    return date(2026, 1, 1) + timedelta(days=10 * next(_days))


payment = st.tuples(st.integers(0, 3),                         # which reference
                    st.sampled_from([1.0, 1.0, 0.5, 2.0, 0.0]),  # fraction of the due
                    st.sampled_from(["{c}", "{l} chuyen tien", "MBVCB.1.{c} NGUYEN",
                                     "{t}", "no code"]),
                    st.booleans())                               # with a callback
decision = st.sampled_from(["refund_due", "write_off", "carry_over", "link", "link", None])


def _snapshot(fp) -> dict[int, tuple]:  # noqa: ANN001
    with fp.db.session() as s:
        return {r.id: (r.status, r.resolution, r.resolution_reason, r.resolved_by)
                for r in s.scalars(select(ReconMismatchRow))}


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(payment, min_size=1, max_size=7), st.lists(decision, max_size=6))
def test_rerun_same_result_resolutions_kept(world, payments, decisions) -> None:  # noqa: ANN001
    from reconcile.testing import typo_of

    fp = world.fp
    day = _fresh_day()
    world.issued_at = datetime.combine(day - timedelta(days=1), time(9), VN_TZ)
    refs = [world.ref([fee]) for fee in ["P-CT-02", "LP-HT-01", "P-CT-01", "P-CT-02"]]
    rows = []
    for i, (which, fraction, memo, with_callback) in enumerate(payments):
        r = refs[which]
        amount = int(r.amount_due * fraction) or 1000
        when = datetime.combine(day, time(8), VN_TZ) + timedelta(minutes=7 * i)
        rows.append((amount, memo.format(c=r.code, l=r.code.lower(), t=typo_of(r.code)),
                     when))
        if with_callback:
            world.callback(r.code, amount, when)
    world.statement(day, rows)
    first = world.run(day)
    assert first.status == "balanced"
    res = Resolutions(fp)
    expected = first.digest
    for m, action in zip(res.list(day=day), decisions, strict=False):
        if res.get(m.id).status != "open":  # an earlier link's re-run no longer raises it
            continue
        if action == "link":  # to the first reference; a link that does not fit is refused
            before = _snapshot(fp)
            try:
                expected = res.link(m.id, refs[0].code, reason="test link",
                                    actor="kbnn.test").rerun.digest
            except FeepayError:
                assert _snapshot(fp) == before
        elif action and not (action == "refund_due" and m.amount == 0):
            res.resolve(m.id, action, reason=f"test {action}", actor="kbnn.test")
    before = _snapshot(fp)
    second = world.run(day)
    assert second.status == "balanced" and second.digest == expected
    after = _snapshot(fp)
    for mid, (status, resolution, reason, by) in before.items():
        if resolution:
            assert after[mid] == (status, resolution, reason, by)
    assert world.run(day).digest == expected
