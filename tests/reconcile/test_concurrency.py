"""Two schedulers at the same moment: each account-day is reconciled exactly once.

Two separate Python processes, each with its own FeePay handle and connection pool,
wait until both are warmed up and then run the nightly job together — on PostgreSQL
(advisory locks) and on SQLite (lock files).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time as time_mod
from datetime import date, datetime, time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from feepay.money import VN_TZ
from feepay.storage.tables_reconcile import ReconRunRow

D1 = date(2025, 12, 1)
pytestmark = pytest.mark.slow


SCHEDULER = """
import json, os, sys, time
from datetime import date
from feepay.api import FeePay
from reconcile.runner import Reconciler
from reconcile.scheduler import nightly

url, go, reverse = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
day = date.fromisoformat(sys.argv[4])
fp = FeePay.open(url, migrate=False)


class Ordered(Reconciler):
    def accounts_for(self, d):
        ids = super().accounts_for(d)
        return ids[::-1] if reverse else ids


rec = Ordered(fp)
rec.accounts_for(day)  # warm up: connections open, modules imported, then race
open(go + ".ready" + ("1" if reverse else "0"), "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
outcomes = nightly(fp, day, catch_up_days=0, reconciler=rec)
print(json.dumps([(o.account_id, o.status) for o in outcomes]))
fp.close()
"""


def _race(url: str, tmp: Path) -> list[list[tuple[int, str]]]:
    """Two scheduler processes, released together once both are warmed up."""
    go = tmp / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER, url, str(go), rev,
                               D1.isoformat()], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for rev in ("0", "1")]
    deadline = time_mod.monotonic() + 120
    while not all((tmp / f"go.ready{r}").exists() for r in "01"):
        assert time_mod.monotonic() < deadline, "schedulers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time_mod.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append([tuple(x) for x in json.loads(out.strip().splitlines()[-1])])
    return results


def test_two_schedulers_reconcile_each_account_day_once(fp, world, tmp_path) -> None:  # noqa: ANN001
    for unit, account in world.demo.accounts.items():
        refs = [world.ref(unit=unit, items=["LP-HT-01"]) for _ in range(15)]
        world.statement(D1, [(8_000, r.code, datetime.combine(D1, time(9, i), VN_TZ))
                             for i, r in enumerate(refs)], account=account)
    results = _race(fp.db.url, tmp_path)
    accounts = sorted(world.demo.accounts.values())
    done = sorted(acc for r in results for acc, status in r if status == "balanced")
    assert done == accounts  # each account-day by exactly one of the two
    assert all(status in ("balanced", "skipped") for r in results for _a, status in r)
    with fp.db.session() as s:
        counts = s.execute(select(ReconRunRow.account_id, func.count())
                           .where(ReconRunRow.day == D1)
                           .group_by(ReconRunRow.account_id)).all()
    assert sorted(counts) == [(a, 1) for a in accounts]
