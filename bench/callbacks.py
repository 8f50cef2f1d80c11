"""Benchmark: verified callbacks per second through gunicorn on 127.0.0.1.

For each database (PostgreSQL and SQLite) this script

1. builds a fresh database with :func:`adapters.testing.callback_world` and issues
   references;
2. starts ``feepay serve`` (gunicorn, gthread) and a **minimal durable endpoint** under the
   same gunicorn settings: verify one HMAC-SHA256, commit one INSERT into the same database,
   reply — the floor any durable callback endpoint pays;
3. drives each with the same closed-loop load: ``--concurrency`` keep-alive connections
   (split over client processes), signed callbacks of all six adapters (feepay) or signed
   bank webhooks (minimal), each a new transaction;
4. prints requests/s, p50/p99 latency, the ratio to the minimal endpoint, checks that the
   database holds exactly what was acknowledged, and the machine it ran on.

Run (PostgreSQL needs a role that may create databases)::

    python bench/callbacks.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Targets on a 2-core machine: ≥ 50 % of the minimal endpoint's throughput, ≥ 600
callbacks/s on PostgreSQL, p99 < 50 ms at 16 concurrent connections.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MINIMAL_SECRET = "bench-minimal-secret"


# --- the minimal durable endpoint -----------------------------------------------------------

def minimal_app(db_url: str):  # noqa: ANN201
    """The floor: a Flask route that verifies one HMAC over the body, commits one INSERT
    into the same database (same engine settings as feepay), and replies."""
    from flask import Flask, request
    from sqlalchemy import text

    from feepay.storage.engine import make_engine

    engine = make_engine(db_url)
    insert = text("INSERT INTO bench_minimal (txn, body) VALUES (:txn, :body)")
    key = MINIMAL_SECRET.encode()
    app = Flask("minimal")

    @app.post("/minimal")
    def minimal():  # noqa: ANN202
        body = request.get_data()
        stamp, _, sig = request.headers.get("X-Signature", "").partition(",")
        good = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, good):
            return {"ok": False}, 401
        with engine.begin() as conn:
            conn.execute(insert, {"txn": json.loads(body)["id"], "body": body})
        return {"ok": True}

    @app.get("/healthz")
    def healthz():  # noqa: ANN202
        return {"status": "ok"}

    return app


def serve_minimal(db_url: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Minimal(BaseApplication):
        def load_config(self) -> None:
            for k, v in {"bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                         "worker_class": "gthread" if threads > 1 else "sync",
                         "keepalive": 5, "accesslog": None, "loglevel": "warning"}.items():
                self.cfg.set(k, v)

        def load(self):  # noqa: ANN202
            return minimal_app(db_url)

    Minimal().run()


def minimal_call(i: int) -> tuple[str, str, bytes, dict[str, str]]:
    body = json.dumps({"id": f"M{i}", "amount": 50000, "memo": "bench"}).encode()
    stamp = str(int(time.time()))
    sig = hmac.new(MINIMAL_SECRET.encode(), stamp.encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    return "POST", "/minimal", body, {"Content-Type": "application/json",
                                      "X-Signature": f"{stamp},{sig}"}


# --- load generation ------------------------------------------------------------------------

def _client(port: int, requests: list, out: multiprocessing.Queue, threads: int) -> None:
    """One client process: ``threads`` keep-alive connections sharing its requests."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    chunks = [requests[i::threads] for i in range(threads)]

    def run(chunk: list) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = []
        for method, path, body, headers in chunk:
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body if method == "POST" else None,
                             headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            local.append((status, time.perf_counter() - t0))
        conn.close()
        with lock:
            results.extend(local)

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(results)


def drive(port: int, requests: list, concurrency: int, processes: int) -> dict[str, float]:
    """Closed loop: ``concurrency`` connections over ``processes`` client processes."""
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    per = [requests[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_client, args=(port, chunk, queue, concurrency // processes))
             for chunk in per]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [r for _ in procs for r in queue.get()]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    lat = sorted(x[1] for x in results)
    ok = sum(1 for s, _ in results if s in (200, 204))
    return {"requests": len(results), "ok": ok, "seconds": wall, "rps": len(results) / wall,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "errors": len(results) - ok}


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def start(cmd: list[str], port: int, path: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env={**os.environ, "FEEPAY_LOG_LEVEL": "ERROR"})
    wait_up(port, path, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# --- one database ---------------------------------------------------------------------------

def prepare(db_url: str, n_refs: int):  # noqa: ANN201
    from adapters.testing import callback_world
    from feepay.api import FeePay
    from feepay.references import IssueRequest

    fp = FeePay.open(db_url)
    world = callback_world(fp)
    refs = fp.references.issue_many([IssueRequest(f"HS-BENCH-{i}", world.unit, ["LP-T-01"])
                                     for i in range(n_refs)])
    from sqlalchemy import text
    ddl = ("CREATE TABLE bench_minimal (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
           "txn VARCHAR(100) NOT NULL UNIQUE, body BYTEA NOT NULL)"
           if fp.db.dialect == "postgresql" else
           "CREATE TABLE bench_minimal (id INTEGER PRIMARY KEY AUTOINCREMENT, "
           "txn VARCHAR(100) NOT NULL UNIQUE, body BLOB NOT NULL)")
    with fp.db.engine.begin() as conn:
        conn.execute(text(ddl))
    return fp, [r.code for r in refs]


def feepay_requests(codes: list[str], n: int, offset: int) -> list:
    from adapters import testing as T

    rng = random.Random(offset)
    out = []
    for i in range(n):
        kind = T.KINDS[i % len(T.KINDS)]
        path, call = T.signed_payment(kind, code=rng.choice(codes), amount=10_000,
                                      txn=offset + i)
        target = f"{path}?{call.query_string}" if call.query_string else path
        out.append((call.method, target, call.body, call.headers))
    return out


def bench_db(label: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
    fp, codes = prepare(db_url, args.refs)
    py = sys.executable
    results: dict[str, object] = {"database": label}
    runs = [("minimal", lambda off: [minimal_call(off + i) for i in range(args.requests)],
             lambda port: [py, __file__, "--serve-minimal", db_url, "--port", str(port),
                           "--workers", str(args.workers), "--threads", str(args.threads)],
             "/healthz"),
            ("feepay", lambda off: feepay_requests(codes, args.requests, off),
             lambda port: [py, "-c", "from webapp.cli import main; main()", "--db", db_url,
                           "serve", "--port", str(port), "--workers", str(args.workers),
                           "--threads", str(args.threads)], "/healthz")]
    acked = 0
    for rnd in range(args.rounds):
        for name, make, cmd, probe in runs:
            port = free_port()
            proc = start(cmd(port), port, probe)
            try:
                warm = drive(port, make(10_000_000 * (rnd + 1) + 5_000_000)[:args.requests // 5],
                             args.concurrency, args.processes)  # warm-up (not counted)
                got = drive(port, make(10_000_000 * (rnd + 1)), args.concurrency,
                            args.processes)
            finally:
                stop(proc)
            if name == "feepay":
                acked += warm["ok"] + got["ok"]
            best = results.get(name)
            if best is None or got["rps"] > best["rps"]:
                results[name] = got
    results["ratio"] = results["feepay"]["rps"] / results["minimal"]["rps"]
    results["check"] = check(fp)
    results["check"]["acknowledged"] = acked
    fp.close()
    return results


def check(fp) -> dict[str, object]:  # noqa: ANN001
    """The database holds exactly what was acknowledged: one event per transaction, the
    references' amount_paid equal to the applied events, nothing left unprocessed."""
    from sqlalchemy import func, select

    from feepay.storage.tables import ReferenceRow
    from feepay.storage.tables_callbacks import InboxRow, PaymentEventRow

    with fp.db.session() as s:
        events = s.scalar(select(func.count()).select_from(PaymentEventRow))
        applied = s.scalar(select(func.sum(PaymentEventRow.amount))
                           .where(PaymentEventRow.applied.is_(True)))
        paid = s.scalar(select(func.sum(ReferenceRow.amount_paid)))
        states = dict(s.execute(select(InboxRow.state, func.count())
                                .group_by(InboxRow.state)).all())
    return {"events": events, "paid_equals_applied": paid == applied, "inbox": states}


# --- machine info and main ------------------------------------------------------------------

def machine(pg_url: str | None) -> dict[str, object]:
    info: dict[str, object] = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
        "load_avg_before": os.getloadavg()}
    try:
        import gunicorn
        info["gunicorn"] = gunicorn.__version__
    except ImportError:
        pass
    if pg_url:
        from sqlalchemy import create_engine, text

        eng = create_engine(pg_url)
        with eng.connect() as c:
            info["postgresql"] = c.execute(text("SHOW server_version")).scalar()
            info["pg_synchronous_commit"] = c.execute(text("SHOW synchronous_commit")).scalar()
        eng.dispose()
    return info


def pg_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pg", help="PostgreSQL admin URL (a bench database is created)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--refs", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--processes", type=int, default=2, help="client processes")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="repeat; keep the best round")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-minimal", metavar="DB_URL")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.serve_minimal:
        serve_minimal(args.serve_minimal, args.port, args.workers, args.threads)
        return
    os.environ.setdefault("FEEPAY_SECRET_KEYS", __import__("cryptography.fernet").fernet
                          .Fernet.generate_key().decode())
    report: dict[str, object] = {"machine": machine(args.pg), "settings": {
        "requests": args.requests, "concurrency": args.concurrency,
        "client_processes": args.processes, "gunicorn_workers": args.workers,
        "threads_per_worker": args.threads}, "results": []}
    targets = []
    if args.pg:
        targets.append(("postgresql", pg_database(args.pg, "feepay_bench_callbacks")))
    if not args.no_sqlite:
        tmp = tempfile.mkdtemp(prefix="feepay-bench-")
        targets.append(("sqlite", f"sqlite:///{tmp}/bench.db"))
    for label, url in targets:
        report["results"].append(bench_db(label, url, args))
    report["machine"]["load_avg_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(json.dumps(report["machine"], default=str))
    print(json.dumps(report["settings"]))
    print(f"{'database':<11} {'endpoint':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7}")
    for res in report["results"]:
        for name in ("minimal", "feepay"):
            r = res[name]
            print(f"{res['database']:<11} {name:<8} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} "
                  f"{r['p99_ms']:>8.1f} {r['errors']:>7}")
        print(f"{res['database']:<11} ratio feepay/minimal = {res['ratio']:.0%}; "
              f"check {res['check']}")


if __name__ == "__main__":
    main()
