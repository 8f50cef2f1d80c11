"""Benchmark: verified callbacks per second through gunicorn on 127.0.0.1.

For each database (PostgreSQL and SQLite) this script

1. builds a fresh database with :func:`adapters.testing.callback_world` and issues
   references;
2. starts ``feepay serve``'s gunicorn (``webapp.commands.run_gunicorn``) and a **minimal
   durable endpoint** served by the very same function and settings: verify one
   HMAC-SHA256, commit one INSERT into the same database through the same engine, reply —
   the floor any durable callback endpoint pays;
3. drives each with the same closed-loop load: ``--concurrency`` keep-alive connections
   (split over client processes; requests are serialised beforehand and written to raw
   sockets, so the load generator takes as little CPU as possible from the 2 cores it
   shares with the server), signed callbacks of all six adapters (feepay) or signed bank
   webhooks (minimal), each a new transaction;
4. measures, besides requests/s and p50/p99 latency, the **CPU time per request** from
   ``/proc``: gunicorn (master + workers), the PostgreSQL backends serving the bench
   database, and the client — figures that do not depend on what else the machine runs —
   and how many cores *other* processes used meanwhile (``/proc/stat`` minus ours);
5. checks that the database holds exactly what was acknowledged, and prints the machine.

Run (PostgreSQL needs a role that may create databases)::

    python bench/callbacks.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Targets on a 2-core machine: ≥ 50 % of the minimal endpoint's throughput, ≥ 600
callbacks/s on PostgreSQL, p99 < 50 ms at 16 concurrent connections.
"""

from __future__ import annotations

import argparse
import contextlib
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

def minimal_app(db_url: str, driver_level: bool = False,  # noqa: ANN201
                threads: int = 8):
    """The floor: a Flask route that verifies one HMAC over the body, commits one INSERT
    into the same database, and replies.

    ``driver_level=False`` (``minimal``): through SQLAlchemy, ``engine.begin()`` on an
    engine made by ``feepay.storage.engine.make_engine`` (feepay's settings; its pool
    holds at least one connection per thread, so no connection is opened per request).
    ``driver_level=True`` (``minimal-raw``): the techniques of feepay's hot path — a
    connection from :class:`feepay.dbapi.HotConnections`, one autocommit INSERT — the
    cheapest durable endpoint this stack allows.
    """
    from flask import Flask, request
    from sqlalchemy import text

    from feepay import dbapi
    from feepay.storage.engine import Database

    db = Database(db_url, **({"pool_size": max(10, threads)}
                             if db_url.startswith("postgresql") else {}))
    insert = text("INSERT INTO bench_minimal (txn, body) VALUES (:txn, :body)")
    raw_insert = dbapi.Statement("bench_minimal", str(insert), {"txn": "text",
                                                                "body": "bytes"})
    hot = dbapi.HotConnections(db)
    key = MINIMAL_SECRET.encode()
    app = Flask("minimal")

    @app.post("/minimal")
    def minimal():  # noqa: ANN202
        body = request.get_data()
        stamp, _, sig = request.headers.get("X-Signature", "").partition(",")
        good = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, good):
            return {"ok": False}, 401
        values = {"txn": json.loads(body)["id"], "body": body}
        if driver_level:
            with hot.connection() as conn:
                conn.run(raw_insert, values)
        else:
            with db.engine.begin() as conn:
                conn.execute(insert, values)
        return {"ok": True}

    @app.get("/healthz")
    def healthz():  # noqa: ANN202
        return {"status": "ok"}

    return app


def serve_minimal(db_url: str, port: int, workers: int, threads: int,
                  driver_level: bool) -> None:
    """The minimal endpoint under exactly ``feepay serve``'s gunicorn settings."""
    from webapp.commands import run_gunicorn

    run_gunicorn(db_url, bind=f"127.0.0.1:{port}", workers=workers, threads=threads,
                 app_factory=lambda: minimal_app(db_url, driver_level, threads))


def minimal_call(i: int) -> tuple[str, str, bytes, dict[str, str]]:
    body = json.dumps({"id": f"M{i}", "amount": 50000, "memo": "bench"}).encode()
    stamp = str(int(time.time()))
    sig = hmac.new(MINIMAL_SECRET.encode(), stamp.encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    return "POST", "/minimal", body, {"Content-Type": "application/json",
                                      "X-Signature": f"{stamp},{sig}"}


# --- load generation ------------------------------------------------------------------------

def encode(method: str, target: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 keep-alive request, serialised once before the run."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (
        body if method == "POST" else b"")


def _response(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bool]:
    """Read one response: (status, bytes already read past it, server closes)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    low = head.lower()
    length = 0
    at = low.find(b"\r\ncontent-length:")
    if at >= 0:
        end = low.find(b"\r\n", at + 2)
        length = int(low[at + 17:end if end > 0 else None])
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        rest += data
    return int(head[9:12]), rest[length:], b"\r\nconnection: close" in low


def _client(port: int, payloads: list[bytes], out: multiprocessing.Queue,
            threads: int) -> None:
    """One client process: ``threads`` keep-alive connections sharing its requests."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    chunks = [payloads[i::threads] for i in range(threads)]

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def run(chunk: list[bytes]) -> None:
        sock, buf, local = connect(), b"", []
        for payload in chunk:
            t0 = time.perf_counter()
            try:
                sock.sendall(payload)
                status, buf, close = _response(sock, buf)
            except OSError:
                status, close = 0, True
            local.append((status, time.perf_counter() - t0))
            if close:
                sock.close()
                sock, buf = connect(), b""
        sock.close()
        with lock:
            results.extend(local)

    cpu0 = time.process_time()
    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((results, time.process_time() - cpu0))


def drive(port: int, payloads: list[bytes], concurrency: int,
          processes: int) -> dict[str, float]:
    """Closed loop: ``concurrency`` connections over ``processes`` client processes."""
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    per = [payloads[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_client, args=(port, chunk, queue, concurrency // processes))
             for chunk in per]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    answers = [queue.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    results = [r for rs, _ in answers for r in rs]
    lat = sorted(x[1] for x in results)
    ok = sum(1 for s, _ in results if s in (200, 204))
    return {"requests": len(results), "ok": ok, "seconds": wall, "rps": len(results) / wall,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "errors": len(results) - ok, "client_cpu_s": sum(c for _, c in answers)}


# --- CPU accounting from /proc ---------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int | str) -> tuple[int, float]:
    """(session id, user + system CPU seconds) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICK


def session_cpu(sid: int) -> float:
    """CPU seconds of the live processes of one session (gunicorn master + workers)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                session, cpu = _proc_cpu(pid)
            except OSError:
                continue
            if session == sid:
                total += cpu
    return total


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


class PgBackends:
    """CPU of the PostgreSQL backends connected to the bench database (read by pid)."""

    def __init__(self, db_url: str | None) -> None:
        self.engine = None
        if db_url and db_url.startswith("postgresql"):
            from sqlalchemy import create_engine

            self.engine = create_engine(db_url, poolclass=__import__(
                "sqlalchemy.pool", fromlist=["NullPool"]).NullPool)

    def cpu(self) -> dict[int, float]:
        if self.engine is None:
            return {}
        from sqlalchemy import text

        with self.engine.connect() as c:
            pids = c.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalars().all()
        out = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                out[pid] = _proc_cpu(pid)[1]
        return out


class CpuMeter:
    """CPU per request of server, database and client, and the cores others used."""

    def __init__(self, server_sid: int, pg: PgBackends) -> None:
        self.sid, self.pg = server_sid, pg

    def __enter__(self) -> CpuMeter:
        self.server0, self.pg0 = session_cpu(self.sid), self.pg.cpu()
        self.busy0, self.wall0 = machine_busy(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server = session_cpu(self.sid) - self.server0
        pg1 = self.pg.cpu()
        self.db = sum(v - self.pg0.get(pid, 0.0) for pid, v in pg1.items())
        self.busy = machine_busy() - self.busy0
        self.wall = time.perf_counter() - self.wall0

    def figures(self, run: dict[str, float]) -> dict[str, float]:
        n = run["requests"]
        ours = self.server + self.db + run["client_cpu_s"]
        return {"cpu_ms_server": 1000 * self.server / n, "cpu_ms_db": 1000 * self.db / n,
                "cpu_ms_client": 1000 * run["client_cpu_s"] / n,
                "other_cores": max(0.0, (self.busy - ours) / self.wall),
                "load_avg_1m": os.getloadavg()[0]}


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read().decode("utf-8", "replace")


def wait_up(port: int, path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {server_log(proc)[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def start(cmd: list[str], port: int, path: str) -> subprocess.Popen:
    """Start a server in its own session; its stderr goes to a temporary file (a pipe
    nobody reads would block the server once full)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True,
                            env={**os.environ, "FEEPAY_LOG_LEVEL": "ERROR"})
    proc.log = log
    wait_up(port, path, proc)
    return proc


def stop(proc: subprocess.Popen) -> str:
    """Stop a server; returns what it wrote to stderr."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    text = server_log(proc)
    proc.log.close()
    return text


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


def feepay_requests(codes: list[str], n: int, offset: int) -> list[bytes]:
    from adapters import testing as T

    rng = random.Random(offset)
    out = []
    for i in range(n):
        kind = T.KINDS[i % len(T.KINDS)]
        path, call = T.signed_payment(kind, code=rng.choice(codes), amount=10_000,
                                      txn=offset + i)
        target = f"{path}?{call.query_string}" if call.query_string else path
        out.append(encode(call.method, target, call.body, call.headers))
    return out


def minimal_requests(n: int, offset: int) -> list[bytes]:
    return [encode(*minimal_call(offset + i)) for i in range(n)]


def bench_db(label: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
    fp, codes = prepare(db_url, args.refs)
    py = sys.executable
    pg = PgBackends(db_url)
    serve = ["--workers", str(args.workers), "--threads", str(args.threads)]
    runs = [(name, lambda off: minimal_requests(args.requests, off),
             lambda port, kind=kind: [py, __file__, "--serve-minimal", db_url, "--port",
                                      str(port), "--minimal-kind", kind, *serve])
            for name, kind in (("minimal", "sqlalchemy"), ("minimal-raw", "raw"))]
    runs.append(("feepay", lambda off: feepay_requests(codes, args.requests, off),
                 lambda port: [py, "-c", "from webapp.cli import main; main()", "--db",
                               db_url, "serve", "--port", str(port), *serve]))
    runs = [r for r in runs if r[0] in args.endpoints]
    results: dict[str, object] = {"database": label, "rounds": []}
    acked = 0
    for rnd in range(args.rounds):
        for k, (name, make, cmd) in enumerate(runs):
            port = free_port()
            offset = 100_000_000 * (rnd + 1) + 10_000_000 * k  # fresh transaction ids
            warm_payloads = make(offset + 5_000_000)[:max(200, args.requests // 5)]
            payloads = make(offset)
            proc = start(cmd(port), port, "/healthz")
            try:
                warm = drive(port, warm_payloads, args.concurrency, args.processes)
                with CpuMeter(proc.pid, pg) as meter:
                    got = drive(port, payloads, args.concurrency, args.processes)
            finally:
                log = stop(proc)
            if got["errors"] or warm["errors"]:
                print(f"{label} {name}: {got['errors']} errors; server log:\n{log[-3000:]}",
                      file=sys.stderr)
            got.update(meter.figures(got))
            got.update(endpoint=name, round=rnd + 1)
            results["rounds"].append(got)
            if name == "feepay":
                acked += warm["ok"] + got["ok"]
            best = results.get(name)
            if best is None or got["rps"] > best["rps"]:
                results[name] = got
    for base in ("minimal", "minimal-raw"):
        if "feepay" in results and base in results:
            results[f"ratio_{base}"] = results["feepay"]["rps"] / results[base]["rps"]
    results["check"] = check(fp)
    results["check"]["acknowledged"] = acked
    fp.close()
    if pg.engine is not None:
        pg.engine.dispose()
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
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="gunicorn workers (default: one per CPU, like feepay serve)")
    ap.add_argument("--threads", type=int, default=16,
                    help="threads per worker (default 16: the least CPU per callback on "
                         "the 2-core benchmark machine)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat; keep the best round")
    ap.add_argument("--endpoints", default="minimal,minimal-raw,feepay",
                    help="comma-separated: minimal, minimal-raw, feepay")
    ap.add_argument("--minimal-kind", default="sqlalchemy", choices=["sqlalchemy", "raw"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-minimal", metavar="DB_URL")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.serve_minimal:
        serve_minimal(args.serve_minimal, args.port, args.workers, args.threads,
                      args.minimal_kind == "raw")
        return
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
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
    print(f"{'database':<11} {'endpoint':<11} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'cpu ms/req: server':>18} {'db':>5} {'client':>6} "
          f"{'other cores':>11}")
    for res in report["results"]:
        for r in res["rounds"]:
            print(f"{res['database']:<11} {r['endpoint']:<11} {r['rps']:>7.0f} "
                  f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6} "
                  f"{r['cpu_ms_server']:>18.2f} {r['cpu_ms_db']:>5.2f} "
                  f"{r['cpu_ms_client']:>6.2f} {r['other_cores']:>11.2f}")
        for base in ("minimal", "minimal-raw"):
            if f"ratio_{base}" in res:
                print(f"{res['database']:<11} best rounds: feepay / {base} = "
                      f"{res[f'ratio_{base}']:.0%}")
        print(f"{res['database']:<11} check {res['check']}")


if __name__ == "__main__":
    main()
