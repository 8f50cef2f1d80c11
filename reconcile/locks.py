"""One account-day at a time, across threads, processes and hosts.

Any number of ``feepay scheduler`` processes may run; each account-day must be reconciled
exactly once. The lock makes runs of one account-day strictly sequential; the runner then
checks, *inside* the lock, whether a finished run already exists (the scheduler skips it).

* **PostgreSQL**: a session-level advisory lock ``pg_advisory_lock(account_id, day)`` on a
  connection held for the duration. It works across hosts, and PostgreSQL releases it if
  the holder dies (connection closed), so a crash never leaves a stale lock.
* **SQLite**: an ``flock`` on ``<database file>.locks/recon-<account>-<day>.lock``. The
  kernel releases it when the process dies. (An in-memory database has one process; a
  thread lock does.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from feepay.storage.engine import Database

log = logging.getLogger(__name__)
_THREAD_LOCKS: dict[tuple[str, int, date], threading.Lock] = {}
_GUARD = threading.Lock()
# Two-int advisory keys live apart from the one-bigint keys (audit log) in pg_locks.
_PG_CLASS_OFFSET = 0x52430000  # "RC": keeps (account, day) pairs in their own range


@contextmanager
def account_day_lock(db: Database, account_id: int, day: date, *,
                     wait: bool = True, timeout: float = 600.0) -> Iterator[bool]:
    """Hold the lock for (account, day); yields whether it was acquired.

    Args:
        wait: block until free (manual runs) or give up at once (schedulers).
        timeout: longest wait, in seconds.
    """
    if db.dialect == "postgresql":
        with _pg_lock(db, account_id, day, wait, timeout) as got:
            yield got
    else:
        with _file_lock(db, account_id, day, wait, timeout) as got:
            yield got


@contextmanager
def _pg_lock(db: Database, account_id: int, day: date, wait: bool,
             timeout: float) -> Iterator[bool]:
    keys = {"a": _PG_CLASS_OFFSET + account_id, "b": day.toordinal()}
    conn = db.engine.connect()
    got = False
    try:
        if wait:  # lock_timeout local to this transaction: the pooled connection stays clean
            conn.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                         {"t": f"{int(timeout * 1000)}ms"})
            conn.execute(text("SELECT pg_advisory_lock(:a, :b)"), keys)
            got = True
        else:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"),
                                    keys).scalar())
        conn.commit()  # session-level lock: outlives this transaction
        yield got
    finally:
        try:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), keys)
                conn.commit()
        finally:
            conn.close()


def lock_dir(db: Database) -> Path | None:
    """Where SQLite lock files go (beside the database file), or None in memory."""
    database = make_url(db.url).database
    if not database or database == ":memory:":
        return None
    return Path(database + ".locks")


@contextmanager
def _file_lock(db: Database, account_id: int, day: date, wait: bool,
               timeout: float) -> Iterator[bool]:
    directory = lock_dir(db)
    thread_lock = _thread_lock(db.url, account_id, day)
    if not thread_lock.acquire(timeout=timeout if wait else 0):
        yield False
        return
    try:
        if directory is None:
            yield True
            return
        directory.mkdir(exist_ok=True)
        path = directory / f"recon-{account_id}-{day.isoformat()}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            got = _flock(fd, wait, timeout)
            yield got
        finally:
            os.close(fd)  # closing releases the flock
    finally:
        thread_lock.release()


def _flock(fd: int, wait: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not wait or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _thread_lock(url: str, account_id: int, day: date) -> threading.Lock:
    """flock is per open file description; threads of one process also need a lock."""
    with _GUARD:
        return _THREAD_LOCKS.setdefault((url, account_id, day), threading.Lock())
