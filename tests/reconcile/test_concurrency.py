"""Two schedulers at the same moment: each account-day is reconciled exactly once.

Two processes (spawned, each with its own FeePay handle and connection pool) wait on a
barrier and then run the nightly job together — on PostgreSQL (advisory locks) and on
SQLite (lock files).
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, datetime, time

import pytest
from sqlalchemy import func, select

from feepay.money import VN_TZ
from feepay.storage.tables_reconcile import ReconRunRow

D1 = date(2025, 12, 1)
pytestmark = pytest.mark.slow


def _scheduler(url: str, barrier, queue, reverse: bool) -> None:  # noqa: ANN001
    from feepay.api import FeePay
    from reconcile.runner import Reconciler
    from reconcile.scheduler import nightly

    fp = FeePay.open(url, migrate=False)

    class Ordered(Reconciler):
        def accounts_for(self, day):  # noqa: ANN001, ANN202 - meet in the middle
            ids = super().accounts_for(day)
            return ids[::-1] if reverse else ids

    rec = Ordered(fp)
    rec.accounts_for(D1)  # warm up: connections open, modules imported, then race
    barrier.wait()
    outcomes = nightly(fp, D1, catch_up_days=0, reconciler=rec)
    queue.put([(o.account_id, o.status) for o in outcomes])
    fp.close()


def test_two_schedulers_reconcile_each_account_day_once(fp, world) -> None:  # noqa: ANN001
    for unit, account in world.demo.accounts.items():
        refs = [world.ref(unit=unit, items=["LP-HT-01"]) for _ in range(15)]
        world.statement(D1, [(8_000, r.code, datetime.combine(D1, time(9, i), VN_TZ))
                             for i, r in enumerate(refs)], account=account)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_scheduler, args=(fp.db.url, barrier, queue, rev))
             for rev in (False, True)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    accounts = sorted(world.demo.accounts.values())
    done = sorted(acc for r in results for acc, status in r if status == "balanced")
    assert done == accounts  # each account-day by exactly one of the two
    assert all(status in ("balanced", "skipped") for r in results for _a, status in r)
    with fp.db.session() as s:
        counts = s.execute(select(ReconRunRow.account_id, func.count())
                           .where(ReconRunRow.day == D1)
                           .group_by(ReconRunRow.account_id)).all()
    assert sorted(counts) == [(a, 1) for a in accounts]
