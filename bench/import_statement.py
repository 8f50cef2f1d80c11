"""Benchmark: import a 1,000,000-line CSV and a 200,000-row XLSX statement into SQLite and
PostgreSQL; report lines per second and peak memory (RSS high-water mark of the process
doing the import, measured in a fresh child process per run).

    python bench/import_statement.py                      # full size, SQLite + PostgreSQL
    python bench/import_statement.py --lines 100000 --xlsx-rows 20000   # quick look
    python bench/import_statement.py --pg postgresql+psycopg://postgres@127.0.0.1/other_db
    python bench/import_statement.py --no-pg             # SQLite only

The files are synthetic Vietcombank-layout exports (title block, bilingual header, debit and
credit columns, ``1,234,567`` amounts, ``dd/mm/yyyy HH:MM:SS`` times, memos carrying valid
payment references), generated once into ``--workdir`` and reused. Each run imports into an
empty database (PostgreSQL: the database ``feepay_bench_statements``, created if needed and
emptied — never a database another benchmark uses) through the same path as ``feepay
statements import``: read and check the whole file while staging rows in a temporary table
(SQLite ``executemany`` into its temp database, PostgreSQL ``COPY``), then one transaction
with one ``INSERT … SELECT … ON CONFLICT DO NOTHING``. A second import of the same CSV
(every line a duplicate) is timed too. "read+check" and "store" split each run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "9990001234567"
FEES = (2_000, 3_000, 8_000, 10_000, 16_000, 50_000, 100_000, 500_000)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/feepay_bench_statements"


# -- synthetic files --------------------------------------------------------------------------
def _rows(n: int, seed: int = 1):
    from feepay.reference import ALPHABET, calc_check_digits

    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 0, 0, 0)
    step = max(1, int(365 * 86400 / max(n, 1)))
    names = ("NGUYEN VAN A", "TRAN THI B", "LE VAN C", "PHAM THI D")
    for i in range(n):
        moment = start + timedelta(seconds=i * step)
        body = "".join(rng.choice(ALPHABET) for _ in range(8))
        code = "FP" + body + calc_check_digits(body)
        name = names[i % 4]
        debit = rng.random() < 0.05
        amount = rng.choice(FEES) if not debit else rng.choice((1_100, 11_000, 500_000))
        shape = i % 4
        memo = (f"MBVCB.{rng.randrange(10**9)}.{name} chuyen tien.CT tu 999{i:010d} {name} "
                f"toi {ACCOUNT} {code}" if shape == 0 else
                f"{code} nop le phi ho tich" if shape == 1 else
                f"CT DEN:{rng.randrange(10**11)} {code.lower()}-CTLNhanh" if shape == 2 else
                f"Nộp phí chứng thực {code[:6]} {code[6:]} - {name.title()}")
        if debit:
            memo = "Phí dịch vụ SMS Banking"
        yield moment, f"{1000 + i % 9000}.{i:07d}", amount, debit, memo


def make_csv(path: Path, n: int) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["NGÂN HÀNG TMCP NGOẠI THƯƠNG VIỆT NAM - VIETCOMBANK"],
                     ["SAO KÊ TÀI KHOẢN / STATEMENT OF ACCOUNT"],
                     ["Số tài khoản/Account number:", ACCOUNT], ["Loại tiền/Currency:", "VND"],
                     ["Ngày giao dịch/Transaction date", "Số tham chiếu/Reference number",
                      "Số tiền ghi nợ/Debit", "Số tiền ghi có/Credit", "Mô tả/Description"]])
        for moment, ref, amount, debit, memo in _rows(n):
            text = f"{amount:,}"
            w.writerow([moment.strftime("%d/%m/%Y %H:%M:%S"), ref, text if debit else "",
                        "" if debit else text, memo])
    tmp.replace(path)


def make_xlsx(path: Path, n: int) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Statement")
    for row in (["NGÂN HÀNG TMCP NGOẠI THƯƠNG VIỆT NAM - VIETCOMBANK"],
                ["SAO KÊ TÀI KHOẢN / STATEMENT OF ACCOUNT"],
                ["Số tài khoản/Account number:", ACCOUNT], ["Loại tiền/Currency:", "VND"],
                ["Ngày giao dịch/Transaction date", "Số tham chiếu/Reference number",
                 "Số tiền ghi nợ/Debit", "Số tiền ghi có/Credit", "Mô tả/Description"]):
        ws.append(row)
    for moment, ref, amount, debit, memo in _rows(n, seed=2):
        ws.append([moment, ref, amount if debit else None, None if debit else amount, memo])
    tmp = path.with_name(path.stem + ".tmp.xlsx")
    wb.save(tmp)
    tmp.replace(path)


# -- one timed import in a fresh process --------------------------------------------------------
def setup(db_url: str) -> None:
    """Create the database, a unit and the account (in its own process: loading the
    official unit list must not count towards the import's memory)."""
    sys.path.insert(0, str(ROOT))
    from feepay.api import FeePay

    fp = FeePay.open(db_url)
    fp.units.add("40", "Tỉnh Nghệ An (bench)", "province")
    print(fp.accounts.register("40", "970436", ACCOUNT, "DON VI THU PHI BENCH").id)
    fp.close()


def child(db_url: str, file: str, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    from adapters.statements import import_file
    from feepay.api import FeePay

    fp = FeePay.open(db_url, migrate=False)
    account = fp.accounts.list()[0].id
    runs = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        _, result = import_file(fp, file, account, fmt="vietcombank", actor="bench")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        runs.append({"seconds": round(seconds, 2), "lines": result.lines, "new": result.new,
                     "duplicates": result.duplicates,
                     "lines_per_s": int(result.lines / seconds),
                     "read": result.seconds_read, "store": result.seconds_store,
                     "cpu": round(cpu, 2),
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                          / 1024, 1)})
    print(json.dumps({"runs": runs, "peak_rss_mb": runs[0]["peak_rss_mb"]}))
    fp.close()


def fresh_sqlite(workdir: Path) -> str:
    path = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm", ".key"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite:///{path}"


def fresh_postgres(url: str) -> str | None:
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    try:
        admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                 {"d": target.database})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
        admin.dispose()
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - report and skip PostgreSQL
        print(f"PostgreSQL at {url} unavailable: {exc}", file=sys.stderr)
        return None
    return url


def run_child(db_url: str, file: Path, repeat: int) -> dict:
    env = dict(os.environ)
    if not env.get("FEEPAY_SECRET_KEYS"):
        from cryptography.fernet import Fernet

        env["FEEPAY_SECRET_KEYS"] = Fernet.generate_key().decode()
    subprocess.run([sys.executable, __file__, "--setup", db_url], env=env, check=True,
                   capture_output=True, text=True)
    out = subprocess.run([sys.executable, __file__, "--child", db_url, str(file), str(repeat)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"import failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    from importlib.metadata import version

    info = {"cpus": str(os.cpu_count()), "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "python-calamine": version("python-calamine"),
            "load average": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    try:
        import psycopg

        info["psycopg"] = psycopg.__version__
    except ImportError:
        pass
    return info


def pg_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.scalar(text("SHOW server_version"))
    engine.dispose()
    return str(version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/feepay-bench"))
    parser.add_argument("--pg", default=os.environ.get("FEEPAY_BENCH_STATEMENTS_PG", DEFAULT_PG))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("DB", "FILE", "REPEAT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--setup", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(args.setup)
        return
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    sys.path.insert(0, str(ROOT))
    args.workdir.mkdir(parents=True, exist_ok=True)
    csv_file = args.workdir / f"vcb_{args.lines}.csv"
    xlsx_file = args.workdir / f"vcb_{args.xlsx_rows}.xlsx"
    for path, make, n in ((csv_file, make_csv, args.lines), (xlsx_file, make_xlsx,
                                                              args.xlsx_rows)):
        if not path.exists():
            start = time.perf_counter()
            make(path, n)
            print(f"generated {path} ({path.stat().st_size / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - start:.1f} s")
    info = machine()
    targets = [("SQLite", lambda: fresh_sqlite(args.workdir))]
    if not args.no_pg:
        targets.append(("PostgreSQL", lambda: fresh_postgres(args.pg)))
    results = []
    for db_name, fresh in targets:
        for label, file, repeat in (("CSV", csv_file, 2), ("XLSX", xlsx_file, 1)):
            url = fresh()
            if url is None:
                continue
            if db_name == "PostgreSQL":
                info["postgresql"] = pg_version(url)
            res = run_child(url, file, repeat)
            first = res["runs"][0]
            results.append((db_name, label, file, first, res["peak_rss_mb"]))
            print(f"{db_name:10} {label:4} {first['lines']:>9,} lines  {first['seconds']:>7.2f} s"
                  f"  {first['lines_per_s']:>8,} lines/s  peak RSS {res['peak_rss_mb']:.0f} MB"
                  f"  (read+check {first['read']:.1f} s, store {first['store']:.1f} s, "
                  f"CPU {first['cpu']:.1f} s)")
            for again in res["runs"][1:]:
                print(f"{'':10} {'':4} re-import (all {again['duplicates']:,} duplicates): "
                      f"{again['seconds']:.2f} s, {again['lines_per_s']:,} lines/s "
                      f"(read+check {again['read']:.1f} s, store {again['store']:.1f} s)")
    print("\nmachine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print("\n| database | file | lines | seconds | lines/s | read+check | store | feepay CPU "
          "| peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for db_name, label, file, first, rss in results:
        print(f"| {db_name} | {label} ({file.stat().st_size / 1e6:.0f} MB) | {first['lines']:,} | "
              f"{first['seconds']:.2f} | {first['lines_per_s']:,} | {first['read']:.1f} s | "
              f"{first['store']:.1f} s | {first['cpu']:.1f} s | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
