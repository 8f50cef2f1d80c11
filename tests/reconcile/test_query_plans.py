"""No reconciliation query reads a big table whole, or an account's whole history.

A night touches a few account-days, but the tables it asks grow with every night
(lines, references, callbacks, matches, mismatches, batches, runs). A query that scans one
of them — a missing index, a condition no index can serve — costs the whole history once
per account-day, and nothing in a small test shows it. Here every statement a realistic
few nights send to SQLite (first runs, gateway batches and their callbacks, a re-run, the
scheduler, a resolution) is planned with ``EXPLAIN QUERY PLAN``; none may scan a big
table, nor read one by account alone. Real SQLite; the plans are SQLite's, so the test
is SQLite's too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta

import pytest
from sqlalchemy import event

from feepay.api import FeePay
from feepay.config import Settings
from feepay.demo_data import seed
from feepay.storage.engine import Database
from reconcile.resolution import Resolutions
from reconcile.scheduler import nightly
from tests.reconcile.conftest import World, at

D1 = date(2025, 12, 1)
BIG = ("statement_lines", "payment_references", "payment_events", "recon_matches",
       "recon_mismatches", "settlement_transactions", "settlement_batches", "recon_runs",
       "recon_resolutions", "statement_imports")


@pytest.fixture
def traced(sqlite_url: str, sealer) -> Iterator[tuple[FeePay, dict[str, str]]]:  # noqa: ANN001
    """A FeePay on SQLite whose every statement is recorded (one sample per shape)."""
    seen: dict[str, str] = {}

    def record(sql: str) -> None:
        seen.setdefault(re.sub(r"'[^']*'|\b\d+\b", "?", sql), sql)

    db = Database(sqlite_url)
    event.listen(db.engine, "connect",
                 lambda dbapi, _rec: dbapi.set_trace_callback(record))
    fp = FeePay(db, sealer, Settings.from_env(sqlite_url))
    yield fp, seen
    db.dispose()


def scans(path: str, statements: dict[str, str]) -> list[tuple[str, str]]:
    """(statement, plan step) for each step that reads a big table whole, or an account's
    whole history in one (by account alone, or every day before one). A ``LIMIT`` probe
    stops at its first row and is let through."""
    out = []
    with closing(sqlite3.connect(path)) as conn:
        for sql in statements.values():
            if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE",
                                                   "WITH")):
                continue
            try:
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            except sqlite3.OperationalError as exc:  # an import's own staging table
                if "no such table: temp." in str(exc):
                    continue
                raise
            for step in (r[3] for r in plan):
                table = re.match(r"SCAN (\w+)", step)
                if table and table.group(1) in BIG:
                    out.append((sql[:200], step))
                history = re.match(r"SEARCH (\w+) .*\((account_id=\?(?: AND day<\?)?)\)$", step)
                if history and history.group(1) in BIG and " LIMIT " not in sql:
                    out.append((sql[:200], step))
    return out


def test_a_night_and_its_reruns_read_no_big_table_whole(traced, sqlite_url) -> None:  # noqa: ANN001
    fp, seen = traced
    world = World(fp, seed(fp))
    d2 = D1 + timedelta(days=1)
    a, b, c, g1, g2, late = (world.ref() for _ in range(6))
    world.callback(a.code, 10_000, at(D1, 8))
    world.callback(g1.code, 10_000, at(D1, 8), provider="vnpay", txn="T1")
    world.callback(g2.code, 10_000, at(D1, 9), provider="vnpay", txn="T2")
    world.callback(late.code, 10_000, at(D1, 10))                 # no money yet
    world.statement(D1, [(10_000, f"NOP PHI {a.code}", at(D1, 8)),
                         (10_000, b.code.lower(), at(D1, 9)),     # no callback
                         (5_000, f"{c.code} mot phan", at(D1, 10)),
                         (7_000, "CHUYEN TIEN KHONG NOI DUNG", at(D1, 11)),
                         (14_700, "VNPAY TT LO VNP-1", at(D1, 23))])
    world.settlement("VNP-1", D1, [("T1", g1.code, 10_000, 200),
                                   ("T2", g2.code, 5_000, 100)])  # half: a carried part
    nightly(fp, d2, catch_up_days=1)
    world.statement(d2, [(5_000, c.code, at(d2, 8)), (10_000, a.code, at(d2, 9)),
                         (5_000, g2.code, at(d2, 10))])
    world.statement(D1, [(10_000, late.code, at(D1, 22))])         # a late statement
    nightly(fp, d2 + timedelta(days=1), catch_up_days=2)
    (unknown,) = Resolutions(fp).list(category="unknown_reference")
    Resolutions(fp).write_off(unknown.id, reason="không xác định được người nộp",
                              actor="kbnn.demo")
    world.recon.run(D1, world.account)
    assert len(seen) > 50                                          # the night was traced
    assert any("settlement_transactions.kind = " in sql for sql in seen.values())  # carried

    found = scans(sqlite_url.removeprefix("sqlite:///"), seen)
    assert not found, "\n".join(f"{step}  <-  {sql}" for sql, step in found)
