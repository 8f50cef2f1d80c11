"""The nightly job and its scheduler: exactly once, catch-up, log-and-continue."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime

from sqlalchemy import func, select

from feepay.storage.tables_reconcile import ReconRunRow
from reconcile.scheduler import build_scheduler, nightly, safe, serve, yesterday

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
