"""Benchmark: the nightly reconciliation of 1,000,000 references and 1,000,000 statement lines.

For each database (SQLite file, PostgreSQL) and each scale (default 100,000 and
1,000,000 lines, to check that 10× the lines costs at most ~10× the time):

1. **set-up (not timed as reconciliation)**: a fresh database with the demo province;
   N references (bulk insert); bank-push callbacks for most transfers and a few gateway
   batches (bulk insert / settlement service); N statement lines imported through the
   real statement service (``fp.statements.import_stream``), spread over the accounts;
2. **the nightly run**, in a fresh process: ``Reconciler(fp).run(day)`` over every
   account — load, match, store matches/mismatches, move reference states, sum check.
   Wall and CPU time, lines per second, peak memory (the process's max RSS), and the
   phases. ``--repeat`` runs (3 by default), each on a fresh copy of the prepared
   database, the scales taking turns (every scale is prepared first, in its own database:
   ``bench-<N>.db``, or ``<name>_<N>`` on PostgreSQL); the median is reported beside
   every run, since wall times on a shared machine move by 10–20 % from one run to the
   next and drift over minutes;
3. **the pandas baseline**, in a fresh process: the same lines and references read into
   DataFrames (codes pre-extracted by the import), an exact ``merge`` on the code and an
   amount comparison — what a quick script would do, with none of the other rules, no
   callbacks and nothing written back.

The lines: 85 % clean memos (the code intact inside bank text), 10 % mangled (lower
case, spaces inside the code, glued text, MoMo relays, diacritics), 5 % mismatches of
every kind (underpaid, overpaid, duplicate, no code, near-miss typo, wrong account,
expired, cancelled, ambiguous, split, multi), plus gateway batch credits; callbacks for
97 % of transfers (``--callbacks``), and a few callbacks whose money never came.

Run::

    python bench/reconcile.py                                   # SQLite, 100k and 1M
    python bench/reconcile.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/feepay_bench
    python bench/reconcile.py --scales 20000 --accounts 1       # quick look
    python bench/reconcile.py --repeat 7 --instructions         # + valgrind's count

``--instructions`` runs each scale's night once more under valgrind and prints the
instructions it executed (the child that only imports and connects subtracted): the
scaling check on a figure the machine's noise does not move (SQLite only).

The PostgreSQL databases (``<name>_<N>`` and their ``_pristine`` copies) are emptied:
the name must contain "bench".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if sys.path[0] != str(ROOT):  # first, or this script's folder would shadow `reconcile`
    sys.path.insert(0, str(ROOT))

DAY = date(2025, 12, 1)
FEES = (2_000, 3_000, 8_000, 10_000, 12_000, 50_000, 100_000, 500_000)
NAMES = ("NGUYEN VAN A", "TRAN THI B", "LE VAN C", "PHAM THI D", "HOANG VAN E")
KINDS = ("underpaid", "overpaid", "duplicate", "no_code", "near_miss", "wrong_account",
         "expired", "cancelled", "ambiguous", "split", "multi")


def _env() -> None:
    if not os.environ.get("FEEPAY_SECRET_KEYS"):
        from cryptography.fernet import Fernet

        os.environ["FEEPAY_SECRET_KEYS"] = Fernet.generate_key().decode()


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM). ``ru_maxrss`` would not do: a child
    forked from a big parent inherits the parent's figure."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- data


def at(seconds: int, day: date = DAY) -> datetime:
    from feepay.money import VN_TZ

    return datetime.combine(day, datetime.min.time(), VN_TZ) + timedelta(seconds=seconds)


def clean_memo(code: str, rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return rng.choice((
        code, f"{code} {name}", f"IBFT {code} {name}", f"Nop phi ho so {code}",
        f"MBVCB.{rng.randrange(10**10)}.{rng.randrange(10**6)}.{name} chuyen tien.CT tu "
        f"{rng.randrange(10**12)} {name} toi 9123 {code}"))


def mangled_memo(code: str, rng: random.Random) -> str:
    name = rng.choice(NAMES)
    spaced = code[:6] + " " + code[6:]
    return rng.choice((
        spaced.lower(), f"ibft {spaced.lower()} {name.lower()}", f"NOP{code}LEPHI",
        f"CT DEN:{rng.randrange(10**12)} {code.lower()}-CTLNhanh",
        f"{rng.randrange(10**12)}-{name} chuyen tien qua MoMo-{code}-MOMO{rng.randrange(10**12)}"
        "MOMO", f"Nộp phí hồ sơ {spaced} - {name.title()}"))


def typo(code: str) -> str:
    from feepay.reference import ALPHABET

    return code[:6] + ALPHABET[(ALPHABET.index(code[6]) + 5) % len(ALPHABET)] + code[7:]


class Data:
    """Everything the set-up writes, generated deterministically from a seed."""

    def __init__(self, n: int, accounts: list[int], units: dict[int, str], seed: int = 1,
                 callbacks: float = 0.97) -> None:
        from feepay.reference import generate

        rng = random.Random(seed)
        self.refs: list[dict] = []
        self.lines: dict[int, list[tuple]] = {a: [] for a in accounts}
        self.events: list[dict] = []
        self.batches: list[tuple[int, str, list[tuple]]] = []
        # issued before any callback (the lost ones came three days before the night)
        issued, expires = at(9 * 3600, DAY - timedelta(days=5)), at(0, DAY + timedelta(days=5))
        codes: set[str] = set()
        while len(codes) < n:  # 31⁸ bodies: a million draws collide about once
            codes.add(generate())
        ordered = sorted(codes)
        rng.shuffle(ordered)
        for i in range(n):
            acc = accounts[i % len(accounts)]
            self.refs.append(dict(
                code=ordered[i], dossier_code=f"BENCH-{i:07d}", items_key="bench",
                competent_unit=units[acc], account_id=acc, amount_due=rng.choice(FEES),
                amount_paid=0, state="issued", memo="", issued_at=issued, expires_at=expires,
                cancelled_at=None))
        self._fill(n, accounts, rng, callbacks)
        self._record_callbacks()

    def _fill(self, n: int, accounts: list[int], rng: random.Random, callbacks: float) -> None:
        refs, gateway = self.refs, max(1, n // 100)   # 1 % paid through VNPAY
        count, i, seq = 0, gateway, 0
        for acc in accounts:   # gateway batches: one per account, its credit on the statement
            txns = [r for r in refs[:gateway] if r["account_id"] == acc]
            if txns:
                self.batches.append((acc, f"VNPAY-{DAY:%Y%m%d}-{acc:03d}", [
                    (f"9{k:09d}", r["code"], r["amount_due"], 1_100) for k, r in
                    enumerate(txns, start=acc * 1_000_000)]))
                net = sum(r["amount_due"] - 1_100 for r in txns)
                self._line(acc, net, f"VNPAY TT GD NGAY {DAY:%d/%m/%Y} LO "
                           f"VNPAY-{DAY:%Y%m%d}-{acc:03d}", at(23 * 3600), None)
                count += 1
        while count < n and i < len(refs):
            r = refs[i]
            seq += 1
            roll = seq % 100
            t = rng.randrange(6 * 3600, 22 * 3600)
            if roll < 95:
                memo = (clean_memo if roll < 85 else mangled_memo)(r["code"], rng)
                self._line(r["account_id"], r["amount_due"], memo, at(t),
                           r if rng.random() < callbacks else None)
                count, i = count + 1, i + 1
                continue
            count, i = self._mismatch(KINDS[(seq // 100) % len(KINDS)], i, count, t, rng)
        for k in range(max(1, n // 2000)):   # callbacks whose money never came
            r = refs[gateway + k * 7]
            if r["state"] == "cancelled":  # cancelled on the night: it took no payment
                r = refs[gateway + k * 7 + 1]
            self.events.append(self._event(r, r["amount_due"], at(15 * 3600, DAY - timedelta(
                days=3)), f"LOST{k}"))

    def _record_callbacks(self) -> None:
        """What recording each callback did, in arrival order
        (:func:`feepay.recording.assess`): the callback's flags and whether it applied,
        and in ``self.paid`` each reference it moved — state, amount paid, ``paid_at`` —
        in the order its first callback came. The set-up writes those states after
        inserting the references issued, as the day's callbacks would have."""
        from feepay.models import PaymentEvent, PaymentStatus
        from feepay.recording import Link, RefBefore, assess, join_flags

        by_code = {r["code"]: r for r in self.refs}
        self.paid: dict[str, tuple[str, int, datetime | None]] = {}
        self.events.sort(key=lambda e: e["paid_at"])
        for e in self.events:
            r = by_code[e["reference_code"]]
            state, paid, paid_at = self.paid.get(r["code"], (r["state"], 0, None))
            event = PaymentEvent.model_construct(
                provider=e["adapter"], provider_txn_id=e["provider_txn_id"],
                reference=r["code"], amount=e["amount"], paid_at=e["paid_at"],
                status=PaymentStatus.SUCCESS)
            before = RefBefore(0, state, r["amount_due"], paid,
                               e["paid_at"] > r["expires_at"], r["account_id"])
            done = assess(event, Link(r["code"], ()), before, e["account_id"])
            e["flags"], e["applied"] = join_flags(done.flags), done.applied
            if done.applied:
                paid += e["amount"]
                if paid_at is None and paid >= r["amount_due"]:
                    paid_at = e["paid_at"]
                self.paid[r["code"]] = (done.state_after.value, paid, paid_at)

    def _mismatch(self, kind: str, i: int, count: int, t: int,
                  rng: random.Random) -> tuple[int, int]:
        refs = self.refs
        r = refs[i]
        acc, due, code = r["account_id"], r["amount_due"], r["code"]
        if kind == "underpaid":
            self._line(acc, due // 2, code, at(t), r)
        elif kind == "overpaid":
            self._line(acc, due + 10_000, code, at(t), r)
        elif kind == "duplicate":   # the previous reference, paid a second time
            prev = refs[i - 1]
            self._line(prev["account_id"], prev["amount_due"], prev["code"], at(t), None)
            return count + 1, i
        elif kind == "no_code":
            self._line(acc, due, f"{rng.choice(NAMES)} CHUYEN TIEN", at(t), None)
        elif kind == "near_miss":
            self._line(acc, due, f"NOP LE PHI {typo(code)}", at(t), None)
        elif kind == "wrong_account":   # paid into the next reference's account
            other = refs[i + 1]["account_id"] if i + 1 < len(refs) else acc
            self._line(other, due, code, at(t), None)
        elif kind == "expired":
            r["expires_at"] = at(0, DAY - timedelta(days=1))
            self._line(acc, due, code, at(t), None)
        elif kind == "cancelled":
            r["state"], r["cancelled_at"] = "cancelled", at(0)
            self._line(acc, due, code, at(t), None)
        elif kind == "ambiguous" and i + 1 < len(refs):
            self._line(acc, due, f"{code} {refs[i + 1]['code']}", at(t), None)
            return count + 1, i + 2
        elif kind in ("split", "multi") and i + 1 < len(refs):
            if kind == "split":
                self._line(acc, due // 2, f"{code} LAN 1", at(t), r)
                self._line(acc, due - due // 2, f"{code} LAN 2", at(t + 60), None)
                return count + 2, i + 1
            nxt = refs[i + 1]
            if nxt["account_id"] == acc:
                self._line(acc, due + nxt["amount_due"], f"{code} {nxt['code']}", at(t), None)
                return count + 1, i + 2
            self._line(acc, due, code, at(t), None)
        else:
            self._line(acc, due, code, at(t), None)
        return count + 1, i + 1

    def _line(self, acc: int, amount: int, memo: str, when: datetime, ref: dict | None) -> None:
        lines = self.lines[acc]
        bank_ref = f"FT25335{len(self.events) + sum(map(len, self.lines.values())):09d}"
        lines.append((amount, memo, when, bank_ref))
        if ref is not None:
            self.events.append(self._event(ref, amount, when - timedelta(seconds=5), bank_ref))

    def _event(self, ref: dict, amount: int, when: datetime, bank_ref: str) -> dict:
        from feepay.money import now_utc

        return dict(adapter="sepay", provider_txn_id=f"S{len(self.events):09d}",
                    status="success", account_id=ref["account_id"],
                    reference_code=ref["code"], amount=amount, paid_at=when, memo=ref["code"],
                    bank_ref=bank_ref, flags="", applied=True, received_at=now_utc(),
                    raw="{}")


# --------------------------------------------------------------------------- set-up


def fresh_database(url: str) -> None:
    from sqlalchemy import text

    from feepay.storage.engine import Database

    if url.startswith("postgresql"):
        if "bench" not in url.rsplit("/", 1)[-1]:
            sys.exit(f"refusing to empty {url}: use a database whose name contains 'bench'")
        db = Database(url)
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        db.dispose()
    else:
        path = Path(url.removeprefix("sqlite:///"))
        for p in path.parent.glob(path.name + "*"):
            if p.is_file():
                p.unlink()


def scale_url(url: str, n: int) -> str:
    """The database of one scale: ``bench-100000.db`` beside the given file, or the given
    PostgreSQL database name with ``_100000`` (created if missing)."""
    if not url.startswith("postgresql"):
        path = Path(url.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name(f'{path.stem}-{n}{path.suffix}')}"
    if "bench" not in _pg_name(url):
        sys.exit(f"refusing to use {url}: use a database whose name contains 'bench'")
    scaled = f"{url.rsplit('/', 1)[0]}/{_pg_name(url)}_{n}"
    from sqlalchemy import text

    with _pg_admin(url) as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                            {"n": _pg_name(scaled)}).scalar():
            conn.execute(text(f'CREATE DATABASE "{_pg_name(scaled)}"'))
    return scaled


def snapshot(url: str) -> None:
    """Keep the prepared database (before its first run) to restore it for every run."""
    if url.startswith("postgresql"):
        _pg_run(f'DROP DATABASE IF EXISTS "{_pg_name(url)}_pristine"',
                  f'CREATE DATABASE "{_pg_name(url)}_pristine" TEMPLATE "{_pg_name(url)}"',
                  url=url)
    else:
        path = Path(url.removeprefix("sqlite:///"))
        with closing(sqlite3.connect(path)) as conn:  # everything in the main file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(path, path.with_name(path.name + ".pristine"))


def restore(url: str) -> None:
    """Put the prepared database back as it was before its first run."""
    if url.startswith("postgresql"):
        _pg_run(f'DROP DATABASE IF EXISTS "{_pg_name(url)}"',
                  f'CREATE DATABASE "{_pg_name(url)}" TEMPLATE "{_pg_name(url)}_pristine"',
                  url=url)
        return
    path = Path(url.removeprefix("sqlite:///"))
    for p in path.parent.glob(path.name + "-*"):  # WAL and shared-memory files
        p.unlink()
    shutil.rmtree(path.with_name(path.name + ".locks"), ignore_errors=True)
    shutil.copyfile(path.with_name(path.name + ".pristine"), path)


def _pg_name(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?")[0]


@contextmanager
def _pg_admin(url: str) -> Iterator[Any]:
    """A connection to the server's ``postgres`` database, outside any transaction."""
    from sqlalchemy import create_engine

    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            yield conn
    finally:
        admin.dispose()


def _pg_run(*statements: str, url: str) -> None:
    from sqlalchemy import text

    with _pg_admin(url) as conn:
        for sql in statements:
            conn.execute(text(sql))


def bulk_insert(fp, table, rows: list[dict], chunk: int = 20_000) -> None:  # noqa: ANN001
    from sqlalchemy import insert

    with fp.db.session() as s:
        for k in range(0, len(rows), chunk):
            s.execute(insert(table), rows[k:k + chunk])


def setup(url: str, n: int, n_accounts: int, callbacks: float) -> dict[str, float]:
    from sqlalchemy import bindparam, update

    from feepay.api import FeePay
    from feepay.demo_data import seed
    from feepay.models import SettlementBatch, SettlementFile, SettlementTxn
    from feepay.statements import CREDIT, Line, StatementInfo, StatementStream
    from feepay.storage.tables import ReferenceRow
    from feepay.storage.tables_callbacks import PaymentEventRow

    timings: dict[str, float] = {}
    fresh_database(url)
    fp = FeePay.open(url)
    province = seed(fp, communes=max(5, n_accounts - 1))  # the department + communes
    accounts = sorted(province.accounts.values())[:n_accounts]
    if len(accounts) < n_accounts:
        raise SystemExit(f"the demo province has only {len(accounts)} units with accounts")
    units = {a: u for u, a in province.accounts.items()}
    clock = time.perf_counter()
    data = Data(n, accounts, units, callbacks=callbacks)
    timings["generate"] = time.perf_counter() - clock
    clock = time.perf_counter()
    bulk_insert(fp, ReferenceRow.__table__, data.refs)
    with fp.db.session() as s:
        ids = dict(s.execute(ReferenceRow.__table__.select().with_only_columns(
            ReferenceRow.code, ReferenceRow.id)).all())
    for e in data.events:
        e["reference_id"] = ids[e["reference_code"]]
    # callbacks are stored as they arrive: in time order
    bulk_insert(fp, PaymentEventRow.__table__, sorted(data.events, key=lambda e: e["paid_at"]))
    # and each moved its reference then: issued rows updated in place, as in production
    R = ReferenceRow.__table__
    with fp.db.session() as s:
        s.execute(update(R).where(R.c.code == bindparam("c")).values(
            state=bindparam("st"), amount_paid=bindparam("paid"), paid_at=bindparam("at")),
            [{"c": code, "st": st, "paid": paid, "at": paid_at}
             for code, (st, paid, paid_at) in data.paid.items()])
    timings["insert_references_and_callbacks"] = time.perf_counter() - clock
    clock = time.perf_counter()
    for acc, batch_id, txns in data.batches:
        models = tuple(SettlementTxn(line_no=k + 1, provider_txn_id=t[0], reference=t[1],
                                     gross=t[2], fee=t[3], net=t[2] - t[3], batch_id=batch_id)
                       for k, t in enumerate(txns))
        fp.statements.import_settlement(SettlementFile(source="vnpay.csv", format="vnpay",
                                                       batches=(SettlementBatch(
            batch_id=batch_id, provider="vnpay", settled_on=DAY,
            net_total=sum(t.net for t in models), transactions=models),)),
            acc, file_name=f"{batch_id}.csv", file_sha256=batch_id.ljust(64, "0"),
            file_size=1)
    for acc, rows in data.lines.items():
        # a bank statement lists its transactions in time order
        lines = (Line(k + 1, DAY, amount, CREDIT, when, bank_ref, memo)
                 for k, (amount, memo, when, bank_ref) in enumerate(
                     sorted(rows, key=lambda r: r[2])))
        fp.statements.import_stream(
            StatementStream(StatementInfo(source=f"sao-ke-{acc}.csv", format="bench"), lines),
            acc, file_name=f"sao-ke-{acc}.csv", file_sha256=f"{acc}".ljust(64, "0"),
            file_size=1)
    timings["import_statements"] = time.perf_counter() - clock
    fp.close()
    del data
    return timings


# --------------------------------------------------------------------------- measured runs


def run_only(url: str) -> None:
    """Child process: the nightly run over every account, then its figures as JSON."""
    from feepay.api import FeePay
    from reconcile.runner import Reconciler

    fp = FeePay.open(url, migrate=False)
    base = peak_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_base = usage.ru_utime + usage.ru_stime
    clock = time.perf_counter()
    outcomes = Reconciler(fp).run(DAY, trigger="bench", actor="bench")
    wall = time.perf_counter() - clock
    phases: dict[str, float] = {}
    for o in outcomes:
        for k, v in o.phases.items():
            phases[k] = phases.get(k, 0.0) + v
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime - cpu_base,
        "load_avg": os.getloadavg()[0], "lines": sum(o.lines for o in outcomes),
        "matches": sum(o.matches for o in outcomes),
        "mismatches": sum(o.mismatches for o in outcomes),
        "balanced": all(o.status == "balanced" for o in outcomes),
        "accounts": len(outcomes), "phases": phases, "peak_mb": peak_mb(),
        "start_mb": base}))


def pandas_only(url: str) -> None:
    """Child process: the pandas exact-merge baseline on the same data."""
    import pandas as pd
    from sqlalchemy import create_engine

    from feepay.storage.engine import normalize_url

    engine = create_engine(normalize_url(url))
    clock = time.perf_counter()
    with engine.connect() as conn:
        lines = pd.read_sql(f"SELECT id, codes, amount FROM statement_lines WHERE posting_date "
                            f"= '{DAY.isoformat()}' AND direction = 'credit'", conn)
        refs = pd.read_sql("SELECT id AS ref_id, code, amount_due FROM payment_references", conn)
    loaded = time.perf_counter() - clock
    clock = time.perf_counter()
    single = lines[(lines["codes"] != "") & ~lines["codes"].str.contains(" ", regex=False)]
    merged = single.merge(refs, left_on="codes", right_on="code", how="left")
    exact = int((merged["amount"] == merged["amount_due"]).sum())
    merge_s = time.perf_counter() - clock
    print(json.dumps({"load_s": loaded, "merge_s": merge_s, "wall_s": loaded + merge_s,
                      "lines": len(lines), "exact": exact, "peak_mb": peak_mb()}))


def open_only(url: str) -> None:
    """Child process: what every ``--run-only`` child does before its night (imports,
    opening the database), and nothing else: subtracted from its instruction count."""
    from feepay.api import FeePay
    from reconcile.runner import Reconciler  # noqa: F401 - imported as the night imports it

    fp = FeePay.open(url, migrate=False)
    with fp.db.engine.connect():  # the first connection: dialect set-up, PRAGMAs
        pass
    fp.close()
    print(json.dumps({}))


def instructions(mode: str, url: str) -> int:
    """User-space instructions a child executes, counted by valgrind (cachegrind without
    its cache model): unlike time, the count does not move with the machine's load or
    speed. The kernel's work (reading and writing pages for SQLite) is not in it, nor a
    database server's: SQLite only. A fixed hash seed lays out every run's dicts alike."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={tmp}/cachegrind.out", sys.executable, __file__, mode,
             url], capture_output=True, text=True, env=env, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        sys.exit(f"valgrind {mode} failed:\n{out.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def child(mode: str, url: str) -> dict:
    out = subprocess.run([sys.executable, __file__, mode, url], capture_output=True,
                         text=True, env=os.environ, check=False)
    if out.returncode != 0:
        sys.exit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="100000,1000000",
                    help="line counts to measure (comma-separated)")
    ap.add_argument("--accounts", type=int, default=6,
                    help="collection accounts the lines are spread over (the demo province's "
                         "department and communes: 1 to ~130)")
    ap.add_argument("--callbacks", type=float, default=0.97,
                    help="share of transfers with a bank-push callback")
    ap.add_argument("--sqlite-dir", default=None, help="where the SQLite file goes")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (database name with 'bench')")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--repeat", type=int, default=3,
                    help="nightly runs per scale, each on a fresh copy of the prepared "
                         "database; the median is reported")
    ap.add_argument("--instructions", action="store_true",
                    help="SQLite: also count the night's instructions under valgrind, "
                         "once per scale (about 20x the run's time): a yardstick the "
                         "machine's noise does not move")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.instructions and shutil.which("valgrind") is None:
        ap.error("--instructions needs valgrind (Debian: apt install valgrind)")
    _env()
    from bench._machine import print_machine

    print("# feepay reconciliation benchmark")
    print_machine([args.pg] if args.pg else [])
    targets = [] if args.no_sqlite else [
        ("sqlite", f"sqlite:///{Path(args.sqlite_dir or tempfile.mkdtemp()) / 'bench.db'}")]
    if args.pg:
        targets.append(("postgresql", args.pg))
    scales = [int(x) for x in args.scales.split(",")]
    results = []
    for name, url in targets:
        # every scale prepared first, then the runs interleaved (small, big, small, …): a
        # shared machine's speed drifts over minutes, and the ratio must not measure that
        urls = {n: scale_url(url, n) for n in scales}
        prepared = {}
        for n in scales:
            prepared[n] = setup(urls[n], n, args.accounts, args.callbacks)
            snapshot(urls[n])
        runs: dict[int, list[dict]] = {n: [] for n in scales}
        for k in range(args.repeat):
            for n in scales:
                if k:
                    restore(urls[n])
                runs[n].append(child("--run-only", urls[n]))
        counted = {}
        for n in scales if args.instructions and name == "sqlite" else ():
            restore(urls[n])
            counted[n] = (instructions("--run-only", urls[n])
                          - instructions("--open-only", urls[n]))
        for n in scales:
            ordered = sorted(runs[n], key=lambda r: r["wall_s"])
            row = {"db": name, "scale": n, "accounts": args.accounts, "setup": prepared[n],
                   "reconcile": ordered[len(ordered) // 2], "runs": runs[n],
                   "pandas": child("--pandas-only", urls[n])}
            if n in counted:
                row["instructions"] = counted[n]
            results.append(row)
            report(row)
    scaling(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(row: dict) -> None:
    r, p = row["reconcile"], row["pandas"]
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items())
    print(f"\n## {row['db']}: {row['scale']:,} references, {r['lines']:,} lines, "
          f"{r['accounts']} accounts")
    print("  set-up (not part of the run): " + ", ".join(
        f"{k} {v:.1f}s" for k, v in row["setup"].items()))
    print("  nightly runs (wall / CPU / load average): " + ", ".join(
        f"{x['wall_s']:.1f}s / {x['cpu_s']:.1f}s / {x['load_avg']:.2f}" for x in row["runs"]))
    print(f"  feepay nightly run (median): {r['wall_s']:.1f}s wall, {r['cpu_s']:.1f}s CPU "
          f"({phases}), "
          f"{r['lines'] / r['wall_s']:,.0f} lines/s, peak RSS {r['peak_mb']:.0f} MB, "
          f"{r['matches']:,} matches, {r['mismatches']:,} mismatches, "
          f"{'balanced' if r['balanced'] else 'UNBALANCED'}")
    if "instructions" in row:
        print(f"  instructions (valgrind, user space, the night alone): "
              f"{row['instructions'] / 1e9:.2f} G")
    print(f"  pandas exact merge: {p['wall_s']:.1f}s wall (read {p['load_s']:.1f}s, merge "
          f"{p['merge_s']:.2f}s), {p['lines'] / p['wall_s']:,.0f} lines/s, peak RSS "
          f"{p['peak_mb']:.0f} MB, {p['exact']:,} exact matches (nothing else)")


def scaling(results: list[dict]) -> None:
    by_db: dict[str, list[dict]] = {}
    for r in results:
        by_db.setdefault(r["db"], []).append(r)
    for db, rows in by_db.items():
        rows.sort(key=lambda r: r["scale"])
        for small, big in zip(rows, rows[1:], strict=False):
            lines = big["reconcile"]["lines"] / small["reconcile"]["lines"]
            t = big["reconcile"]["wall_s"] / small["reconcile"]["wall_s"]
            cpu = big["reconcile"]["cpu_s"] / small["reconcile"]["cpu_s"]
            print(f"\n{db}: {lines:.1f}x the lines took {t:.1f}x the time, medians "
                  f"({'ok' if t <= lines * 1.1 else 'SUPERLINEAR'}); {cpu:.1f}x the CPU time")
            if "instructions" in small and "instructions" in big:
                counted = big["instructions"] / small["instructions"]
                print(f"  instructions: {counted:.2f}x "
                      f"({'ok' if counted <= lines * 1.1 else 'SUPERLINEAR'})")
            walls = ([r["wall_s"] for r in small["runs"]], [r["wall_s"] for r in big["runs"]])
            if min(map(len, walls)) >= 3:
                lo, hi = noise_interval(*walls)
                paired = statistics.median(b / a for a, b in zip(*walls, strict=False))
                print(f"  the runs' own spread: 90 % bootstrap interval of that ratio "
                      f"{lo:.1f}-{hi:.1f}x; paired (each big run over the small run just "
                      f"before it) median {paired:.1f}x")


def noise_interval(small: list[float], big: list[float], rounds: int = 2000,
                   ) -> tuple[float, float]:
    """A 90 % bootstrap interval of ``median(big) / median(small)``: how far the spread
    of the runs alone moves the ratio (seeded, so the same runs print the same interval)."""
    rng = random.Random(0)
    ratios = sorted(statistics.median(rng.choices(big, k=len(big)))
                    / statistics.median(rng.choices(small, k=len(small)))
                    for _ in range(rounds))
    return ratios[rounds // 20], ratios[rounds - rounds // 20 - 1]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-only":
        _env()
        run_only(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--open-only":
        _env()
        open_only(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--pandas-only":
        _env()
        pandas_only(sys.argv[2])
    else:
        main()
