"""The nightly job and its scheduler: exactly once, catch-up, log-and-continue."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import ReconRunRow
from reconcile.scheduler import build_scheduler, nightly, safe, serve, yesterday
from tests.reconcile.conftest import at

D1 = date(2025, 12, 1)


def runs(fp) -> list[tuple]:  # noqa: ANN001
    with fp.db.session() as s:
        return s.execute(select(ReconRunRow.account_id, ReconRunRow.day,
                                func.count()).group_by(ReconRunRow.account_id,
                                                       ReconRunRow.day)).all()


def test_nightly_runs_each_account_day_once_and_catches_up(fp, world) -> None:  # noqa: ANN001
    first = nightly(fp, D1, catch_up_days=2)
    accounts = len(world.demo.accounts)
    assert len(first) == 3 * accounts and {o.status for o in first} == {"balanced"}
    second = nightly(fp, D1, catch_up_days=2)
    assert {o.status for o in second} == {"skipped"}
    assert {o.reason for o in second} == {"already reconciled"}
    assert all(n == 1 for _a, _d, n in runs(fp)) and len(runs(fp)) == 3 * accounts


def test_a_statement_imported_weeks_late_is_reconciled_by_the_next_night(
        fp, world) -> None:  # noqa: ANN001
    """Days older than the catch-up window run when a file imported within the window
    touches them: a statement's posting days, a settlement batch's day and lag after."""
    a, b = world.ref(), world.ref()
    old, older = D1 - timedelta(days=20), D1 - timedelta(days=200)
    world.statement(old, [(10_000, a.code, at(old, 9))])
    world.statement(older, [(10_000, b.code, at(older, 9))])  # beyond LATE_MAX_DAYS
    world.settlement("VNP-OLD-0001", old - timedelta(days=5), [("T1", b.code, 5_000, 100)])
    out = nightly(fp, D1, catch_up_days=2)
    late = {(o.account_id, o.day): o for o in out if o.day < D1 - timedelta(days=2)}
    acc = world.account
    assert late[(acc, old)].status == "balanced" and late[(acc, old)].matched == 10_000
    batch_days = {old - timedelta(days=5) + timedelta(days=i) for i in range(4)}
    assert {d for (_a, d) in late} == batch_days | {old}
    assert older not in {d for (_a, d) in late}
    with fp.db.session() as s:
        assert s.scalar(select(ReferenceRow.state).where(ReferenceRow.code == a.code)) == (
            "settled")
    again = nightly(fp, D1, catch_up_days=2)
    assert {o.status for o in again} == {"skipped"}
    assert {(o.account_id, o.day) for o in again} >= set(late)


def test_files_imported_before_the_window_start_nothing_old(fp, world) -> None:  # noqa: ANN001
    """Only files imported within the catch-up window are looked at: a day touched by an
    older import was the concern of the nights back then."""
    a = world.ref()
    old = D1 - timedelta(days=20)
    world.statement(old, [(10_000, a.code, at(old, 9))])
    later = datetime.now(UTC) + timedelta(days=10)  # ten days after the import
    out = nightly(fp, D1, catch_up_days=2, now=later)
    assert all(o.day >= D1 - timedelta(days=2) for o in out)


def test_yesterday_is_local() -> None:
    # 17:30 UTC on 30/11 is 00:30 on 01/12 in Vietnam: yesterday is 30/11
    assert yesterday(datetime(2025, 11, 30, 17, 30, tzinfo=UTC)) == date(2025, 11, 30)
    assert yesterday(datetime(2025, 11, 30, 16, 59, tzinfo=UTC)) == date(2025, 11, 29)


def test_scheduler_uses_local_time_and_survives_errors(caplog) -> None:  # noqa: ANN001
    calls = []

    def job() -> None:
        calls.append(1)
        raise RuntimeError("database went away")

    sched = build_scheduler(job, at="06:00")
    (registered,) = sched.get_jobs()
    assert str(registered.at_time) == "06:00:00"
    assert str(registered.at_time_zone) == "Asia/Ho_Chi_Minh"
    with caplog.at_level(logging.ERROR, logger="reconcile.scheduler"):
        sched.run_all()
        sched.run_all()
    assert len(calls) == 2  # still scheduled after failing
    assert "database went away" in caplog.text and len(sched.get_jobs()) == 1
    assert safe(lambda: 42)() == 42


def test_serve_stops_when_asked(fp) -> None:  # noqa: ANN001
    stop = threading.Event()
    t = threading.Thread(target=serve, args=(fp,), kwargs={"stop": stop,
                                                           "poll_seconds": 0.05})
    t.start()
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive()


def test_a_day_another_process_holds_is_waited_for_before_the_later_days(
        fp, world) -> None:  # noqa: ANN001
    """Another process holds the account's earlier day: running the later day before it
    commits would compute it without that day's result. The night waits for the lock,
    then runs the earlier day and the later one, in that order."""
    import threading

    from reconcile.locks import account_day_lock

    acc, earlier = world.account, D1 - timedelta(days=1)
    held, release = threading.Event(), threading.Event()

    def other_process() -> None:
        with account_day_lock(fp.db, acc, earlier, wait=False) as got:
            assert got
            held.set()
            release.wait(30)

    holder = threading.Thread(target=other_process)
    holder.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    out = nightly(fp, D1, catch_up_days=1)
    holder.join()
    mine = [(o.day, o.status) for o in out if o.account_id == acc]
    assert mine == [(earlier, "balanced"), (D1, "balanced")]
    assert all(n == 1 for _a, _d, n in runs(fp))
