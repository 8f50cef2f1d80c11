"""Concurrency and crash tests through a real server (``feepay serve``, gunicorn) on
127.0.0.1: parallel duplicate deliveries from threads and processes, a 1,000-callback
burst with duplicates and forgeries, and a SIGKILL during a burst followed by
``feepay inbox replay``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from adapters import testing as T
from adapters.testing import SECRETS, CallbackWorld, SignedCall, callback_world, deliver
from feepay.api import FeePay
from feepay.references import IssueRequest
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_callbacks import InboxRow, PaymentEventRow
from webapp.cli import main

pytestmark = pytest.mark.slow
POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    db_url: str
    proc: subprocess.Popen | None = None

    def start(self, workers: int = 2, threads: int = 4) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from webapp.cli import main; main()", "--db", self.db_url,
             "serve", "--port", str(port), "--workers", str(workers), "--threads",
             str(threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "FEEPAY_LOG_LEVEL": "ERROR"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _ = deliver(self.url, "/healthz", SignedCall("GET"), timeout=1)
                if status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("feepay serve did not come up: "
                           + self.proc.stderr.read().decode()[-2000:])

    def kill(self) -> None:
        """SIGKILL the whole server (gunicorn master and every worker)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def world(fp: FeePay) -> CallbackWorld:
    return callback_world(fp)


@pytest.fixture
def server(db_url: str, world: CallbackWorld) -> Iterator[Server]:
    srv = Server(f"http://127.0.0.1:{free_port()}", db_url)
    srv.start()
    yield srv
    srv.stop()


def counts(fp: FeePay) -> dict[str, object]:
    with fp.db.session() as s:
        return {
            "events": s.scalar(select(func.count()).select_from(PaymentEventRow)),
            "inbox": dict(s.execute(select(InboxRow.state, func.count())
                                    .group_by(InboxRow.state)).all()),
            "paid_total": s.scalar(select(func.coalesce(func.sum(ReferenceRow.amount_paid), 0))),
            "applied_total": s.scalar(select(func.coalesce(func.sum(PaymentEventRow.amount), 0))
                                      .where(PaymentEventRow.applied.is_(True))),
        }


def _fork_pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))


@BOTH
def test_same_callback_50_times_threads_and_processes(fp: FeePay, world: CallbackWorld,
                                                      server: Server) -> None:
    ref = world.issue(fp, "HS-CONC-1")
    call = T.vnpay_ipn(SECRETS["vnpay"]["hash_secret"], txn_ref=ref.code, amount=50_000,
                       txn_no="880001")
    path = "/callbacks/vnpay/vnpay"
    with ThreadPoolExecutor(25) as threads, _fork_pool(4) as procs:
        futures = [threads.submit(deliver, server.url, path, call) for _ in range(25)]
        futures += [procs.submit(deliver, server.url, path, call) for _ in range(25)]
        replies = [f.result() for f in futures]
    codes = Counter(json.loads(body)["RspCode"] for status, body in replies if status == 200)
    assert codes == {"00": 1, "02": 49}  # one confirmation, every other "already confirmed"
    got = fp.references.get(ref.code)
    assert (got.state.value, got.amount_paid) == ("paid", 50_000)
    assert counts(fp) == {"events": 1, "inbox": {"processed": 50}, "paid_total": 50_000,
                          "applied_total": 50_000}


def _mixed_callbacks(fp: FeePay, world: CallbackWorld, n: int, seed: int
                     ) -> tuple[list[tuple[str, str, SignedCall, bool]], dict[str, int]]:
    """n distinct callbacks over every adapter; ~5 % forged. Returns the deliveries
    (kind, path, call, genuine) and the expected amount_paid per reference."""
    rng = random.Random(seed)
    refs = fp.references.issue_many([IssueRequest(f"HS-BURST-{i}", world.unit, ["LP-T-01"])
                                     for i in range(n // 5)])
    expected: Counter[str] = Counter()
    out = []
    for i in range(n):
        ref = rng.choice(refs)
        amount = rng.choice([10_000, 20_000, 50_000])
        forged = rng.random() < 0.05
        kind = T.KINDS[i % len(T.KINDS)]
        path, call = T.signed_payment(kind, code=ref.code, amount=amount, txn=900_000 + i,
                                      secret="forged-secret" if forged else None)
        out.append((kind, path, call, not forged))
        if not forged:
            expected[ref.code] += amount
    return out, dict(expected)


@POSTGRES
def test_1000_callbacks_30pct_duplicates_5pct_forged(fp: FeePay, world: CallbackWorld,
                                                     server: Server) -> None:
    distinct, expected = _mixed_callbacks(fp, world, 1000, seed=7)
    rng = random.Random(8)
    genuine = [d for d in distinct if d[3]]
    forged = [d for d in distinct if not d[3]]
    dups = rng.sample(genuine, 300)  # 30 % of the 1000, redelivered
    deliveries = distinct + dups
    rng.shuffle(deliveries)
    with ThreadPoolExecutor(16) as threads, _fork_pool(2) as procs:
        futures = [(threads if i % 4 else procs).submit(deliver, server.url, path, call)
                   for i, (_kind, path, call, _g) in enumerate(deliveries)]
        replies = [f.result() for f in futures]
    for (kind, _path, _call, ok), (status, body) in zip(deliveries, replies, strict=True):
        if ok:
            assert T.is_acknowledged(kind, status, body), (kind, status, body)
        else:
            assert T.is_rejected_signature(kind, status, body), (kind, status, body)
    c = counts(fp)
    assert c["events"] == len(genuine)
    assert c["inbox"] == {"processed": len(genuine) + 300, "rejected": len(forged)}
    assert c["paid_total"] == c["applied_total"] == sum(expected.values())
    with fp.db.session() as s:
        paid = dict(s.execute(select(ReferenceRow.code, ReferenceRow.amount_paid)).all())
    assert {k: v for k, v in paid.items() if v} == expected


@BOTH
def test_sigkill_during_burst_then_replay(fp: FeePay, world: CallbackWorld,
                                          server: Server) -> None:
    """Kill -9 the server mid-burst; after restart + `feepay inbox replay`, every request
    the server acknowledged is recorded exactly once, and nothing is counted twice."""
    refs = fp.references.issue_many([IssueRequest(f"HS-KILL-{i}", world.unit, ["LP-T-01"])
                                     for i in range(50)])
    calls = [(f"FT{i}", T.bank_webhook(SECRETS["bankhook"]["webhook_secret"],
                                       txn_id=f"FT{i}", amount=10_000,
                                       memo=refs[i % 50].code)) for i in range(600)]
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(chunk: list[tuple[str, SignedCall]]) -> None:
        for txn, call in chunk:
            if stop.is_set():
                return
            try:
                status, body = deliver(server.url, "/callbacks/bankhook/bankhook", call, 5)
            except (OSError, http.client.HTTPException):
                return  # the server is gone (possibly mid-reply: not acknowledged)
            if status == 200 and json.loads(body)["ok"]:
                with lock:
                    acked.append(txn)

    threads = [threading.Thread(target=worker, args=(calls[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    while len(acked) < 150:
        time.sleep(0.005)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    before = counts(fp)
    server.start()  # restarted: it serves again
    out = CliRunner().invoke(main, ["--db", fp.db.url, "inbox", "replay", "--json"])
    assert out.exit_code == 0, out.output
    replay = json.loads(out.output)
    with fp.db.session() as s:
        recorded = Counter(s.scalars(select(PaymentEventRow.provider_txn_id)))
        pending = s.scalar(select(func.count()).select_from(InboxRow)
                           .where(InboxRow.state == "received"))
    assert set(acked) <= set(recorded)             # every acknowledged request is there
    assert max(recorded.values()) == 1             # ... exactly once
    assert pending == 0                             # nothing left unprocessed
    after = counts(fp)
    assert after["paid_total"] == after["applied_total"] == 10_000 * len(recorded)
    assert after["inbox"].get("processed", 0) == len(recorded)
    print(f"\nkill test: acked {len(acked)}, recorded {len(recorded)}, "
          f"received-but-unprocessed at kill {before['inbox'].get('received', 0)}, "
          f"replayed {replay['replayed']}")


@POSTGRES
def test_sigkill_between_inbox_commit_and_recording_then_replay(
        fp: FeePay, world: CallbackWorld, server: Server) -> None:
    """Deterministic variant of the kill test: requests are committed to the inbox and
    then held before recording (a lock on their reference, taken by the test), the server
    is killed with SIGKILL and the database sessions it had are terminated (as a crashed
    host's would be). Every one of those requests is then recovered by ``inbox replay`` —
    recorded once, applied once."""
    from sqlalchemy import create_engine, text

    ref = world.issue(fp, "HS-KILL-HELD")
    calls = [T.bank_webhook(SECRETS["bankhook"]["webhook_secret"], txn_id=f"FT-H{i}",
                            amount=10_000, memo=ref.code)
             for i in range(3)]  # fewer than one worker's threads: none waits for a thread
    blocker = create_engine(fp.db.url)
    with blocker.connect() as held:
        held.execute(text("SELECT id FROM payment_references WHERE code = :c FOR UPDATE"),
                     {"c": ref.code})
        senders = [threading.Thread(target=lambda c=c: _try_deliver(server.url, c))
                   for c in calls]
        for t in senders:
            t.start()
        deadline = time.monotonic() + 20
        while counts(fp)["inbox"].get("received", 0) < len(calls):
            assert time.monotonic() < deadline, counts(fp)
            time.sleep(0.05)
        server.kill()
        held.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"))
        held.rollback()
    blocker.dispose()
    for t in senders:
        t.join(10)
    assert counts(fp)["events"] == 0 and counts(fp)["inbox"] == {"received": len(calls)}

    out = CliRunner().invoke(main, ["--db", fp.db.url, "inbox", "replay", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["outcomes"] == {"processed": len(calls)}
    after = counts(fp)
    assert after["events"] == len(calls) and after["inbox"] == {"processed": len(calls)}
    assert fp.references.get(ref.code).amount_paid == 10_000 * len(calls)


def _try_deliver(url: str, call: SignedCall) -> None:
    # the server is killed while the request waits: it is never acknowledged
    with contextlib.suppress(OSError, http.client.HTTPException):
        deliver(url, "/callbacks/bankhook/bankhook", call, 30)
