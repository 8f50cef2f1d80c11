"""Resolving mismatches: each action, its guard rails, and its audit entry."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from sqlalchemy import select

from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.money import VN_TZ
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconMatchRow
from reconcile.resolution import Resolutions

D1 = date(2025, 12, 1)


def at(hh: int, mm: int = 0, day: date = D1) -> datetime:
    return datetime.combine(day, time(hh, mm), VN_TZ)


def only(res: Resolutions, category: str):  # noqa: ANN201
    (m,) = res.list(category=category)
    return m


def test_link_reruns_the_day_and_settles(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, f"NOP PHI {a.code[:6]} {a.code[6:8]}", at(9))])  # code cut
    world.run(D1)
    res = Resolutions(fp)
    m = only(res, "unknown_reference")
    done = res.link(m.id, a.code.lower(), reason="người nộp gọi điện xác nhận",
                    actor="kbnn.demo")
    assert done.mismatch.status == "resolved" and done.mismatch.linked_reference == a.code
    assert done.rerun.status == "balanced" and done.rerun.attempt == 2
    assert done.rerun.matched == 10_000 and done.rerun.held == 0
    with fp.db.session() as s:
        assert s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == a.code)) == \
            "settled"
        assert s.scalar(select(ReconMatchRow.rule)) == "manual"
    entries = fp.audit.entries(object_type="mismatch", object_id=str(m.id))
    assert [e["action"] for e in entries] == ["mismatch.link"]
    assert entries[0]["reason"] == "người nộp gọi điện xác nhận"
    assert res.history(m.id)[0]["audit_hash"] == entries[0]["hash"]
    assert fp.audit.verify().ok
    assert world.run(D1).digest == done.rerun.digest  # the link keeps applying


def test_each_action_and_its_audit_entry(fp, world) -> None:  # noqa: ANN001
    a, b = world.ref(), world.ref()
    world.callback(b.code, 3_000, at(11))  # the account gets callbacks: a's missing one shows
    world.statement(D1, [(10_000, a.code, at(9)), (10_000, a.code, at(10)),
                         (3_000, b.code, at(11)), (500, "LAI TIEN GUI", at(12))])
    world.run(D1)
    res = Resolutions(fp)
    res.refund_due(only(res, "duplicate").id, reason="hoàn trả lần nộp thứ hai",
                   actor="kbnn.demo")
    carried = res.carry_over(only(res, "underpaid").id, reason="chờ nộp nốt",
                             actor="kbnn.demo")
    assert carried.mismatch.status == "carried_over"
    res.write_off(only(res, "unknown_reference").id, reason="lãi ngân hàng",
                  actor="kbnn.demo")
    res.acknowledge(only(res, "money_no_callback").id, reason="đã báo hệ thống một cửa",
                    actor="kbnn.demo")
    actions = [e["action"] for e in fp.audit.entries(object_type="mismatch")]
    assert actions == ["mismatch.refund_due", "mismatch.carry_over", "mismatch.write_off",
                       "mismatch.acknowledge"]
    assert res.list() == []  # nothing open
    assert fp.audit.verify().ok
    # the carried-over part-payment is completed the next day and cleared
    world.statement(date(2025, 12, 2), [(7_000, b.code, at(8, day=date(2025, 12, 2)))])
    world.run(date(2025, 12, 2))
    assert only_status(res, "underpaid") == "cleared"


def only_status(res: Resolutions, category: str) -> str:
    (m,) = res.list(status=None, category=category)
    return m.status


def test_guard_rails(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.callback(a.code, 10_000, at(9, day=date(2025, 11, 27)))
    world.statement(D1, [(5_000, "KHONG MA", at(9))])
    world.run(D1)
    res = Resolutions(fp)
    unknown, pnm = only(res, "unknown_reference"), only(res, "paid_no_money")
    with pytest.raises(ValidationError, match="reason"):
        res.write_off(unknown.id, reason="  ", actor="kbnn.demo")
    with pytest.raises(ValidationError, match="acting"):
        res.write_off(unknown.id, reason="x", actor="")
    with pytest.raises(ValidationError, match="action"):
        res.resolve(unknown.id, "delete", reason="x", actor="kbnn.demo")
    with pytest.raises(ValidationError, match="no statement line"):
        res.link(pnm.id, a.code, reason="x", actor="kbnn.demo")
    with pytest.raises(ValidationError, match="no money"):
        res.refund_due(pnm.id, reason="x", actor="kbnn.demo")
    with pytest.raises(ValidationError, match="money_no_callback"):
        res.acknowledge(unknown.id, reason="x", actor="kbnn.demo")
    with pytest.raises(NotFound):
        res.write_off(999_999, reason="x", actor="kbnn.demo")
    b = world.ref()
    fp.references.cancel(b.code, "hồ sơ rút")
    with pytest.raises(Conflict, match="cancelled"):
        res.link(unknown.id, b.code, reason="x", actor="kbnn.demo")
    res.write_off(pnm.id, reason="cổng thanh toán xác nhận giao dịch lỗi", actor="kbnn.demo")
    with pytest.raises(Conflict, match="resolved"):
        res.carry_over(pnm.id, reason="x", actor="kbnn.demo")
    assert [e["action"] for e in fp.audit.entries(object_type="mismatch")] == [
        "mismatch.write_off"]  # refused actions leave no trace
