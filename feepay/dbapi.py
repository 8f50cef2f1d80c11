"""Driver-level access for the callback hot path (inbox, payment events).

A callback costs two statements; through SQLAlchemy's execution layer — or even through
a psycopg cursor — each one costs more Python than the database spends on it. The hot
path therefore runs a few fixed statements (:class:`Statement`) as directly as the
drivers allow:

- **PostgreSQL**: each statement is prepared once per connection (server-side, with
  declared parameter types) and executed with libpq's ``PQexecPrepared`` through
  psycopg's documented low-level :mod:`psycopg.pq` interface — parameters encoded in
  text format (``bytea`` in binary), results decoded from their type OIDs. Connections
  are in **autocommit** mode: a lone statement is its own transaction, committed
  durably when it returns (one round trip instead of BEGIN + statement + COMMIT);
- **SQLite**: the sqlite3 connection of the engine's pool (``isolation_level=None``).

Several statements that must commit together run inside :meth:`Raw.transaction`
(``BEGIN IMMEDIATE`` on SQLite, so writers queue). Values are converted the way the ORM
stores them (:meth:`Raw.ts`: aware UTC datetimes; SQLite keeps them as
``YYYY-MM-DD HH:MM:SS.ffffff`` text), so rows written here read back identically through
the ORM and vice versa.

:class:`HotConnections` keeps the callback endpoint's PostgreSQL connections between
requests (no pool bookkeeping, no pre-ping round trip per request): a reused connection
found broken on its first statement is replaced and the statement retried once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feepay.storage.engine import Database

log = logging.getLogger(__name__)
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")

# PostgreSQL type OIDs of the parameter kinds a Statement declares
_OIDS = {"int": 20, "text": 25, "bool": 16, "ts": 1184, "bytes": 17}
_INT_OIDS = frozenset({20, 21, 23, 26})
_TEXT_OIDS = frozenset({25, 1043, 1042, 19})
_RETRY_PREPARE = frozenset({"26000", "0A000"})  # statement gone; "cached plan must not
#                                                  change result type" after a migration


def _text(value: object) -> bytes:
    return str(value).encode()


def _int(value: int) -> bytes:
    return b"%d" % value


def _bool(value: object) -> bytes:
    return b"t" if value else b"f"


def _ts(value: datetime) -> bytes:
    return value.isoformat().encode()  # aware: always carries its offset


# Parameters in PostgreSQL's text format (``bytea``: sent as is, in binary format)
_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "text": _text, "int": _int, "bool": _bool, "ts": _ts, "bytes": bytes}


def _decode(value: bytes | None, oid: int) -> object:
    if value is None:
        return None
    if oid in _INT_OIDS:
        return int(value)
    if oid in _TEXT_OIDS:
        return value.decode()
    if oid == 16:
        return value == b"t"
    raise TypeError(f"hot-path statements return ints, text and booleans (got oid {oid})")


class Statement:
    """One fixed SQL statement, written once with ``:name`` parameters.

    ``types`` gives every parameter's kind (``int``, ``text``, ``bool``, ``ts``,
    ``bytes``); on PostgreSQL they are declared when the statement is prepared, so the
    server never has to guess. Results may only hold ints, text and booleans.
    """

    def __init__(self, name: str, text: str, types: Mapping[str, str]) -> None:
        self.name = name
        self.sqlite = text
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            param = match.group(1)
            if param not in types:
                raise ValueError(f"statement {name}: no type for :{param}")
            if param not in order:
                order.append(param)
            return f"${order.index(param) + 1}"

        self.pg = _PARAM.sub(number, text).encode()
        self.pg_name = f"feepay_{name}".encode()
        self.params = tuple((p, types[p]) for p in order)
        self.encoders = tuple((p, _ENCODERS[types[p]]) for p in order)
        self.oids = [_OIDS[kind] for _, kind in self.params]
        self.formats = [1 if kind == "bytes" else 0 for _, kind in self.params]


class Raw:
    """One DB-API connection in autocommit mode (see the module doc)."""

    def __init__(self, dialect: str, dbapi_connection: Any,
                 reconnect: Callable[[], Any] | None = None) -> None:
        self.dialect = dialect
        self.conn = dbapi_connection
        self.postgres = dialect == "postgresql"
        self._in_transaction = False
        self._reconnect = reconnect  # set while a reused connection is still unproven

    def run(self, statement: Statement, values: Mapping[str, Any]) -> list[tuple]:
        """Execute ``statement`` with ``values`` (extra keys are ignored); its rows.

        The first statement on a reused connection that turns out broken (the server
        restarted, an idle connection was cut) runs again once on a new connection.
        """
        try:
            rows = self._run(statement, values)
        except Exception:
            if self._reconnect is None or not getattr(self.conn, "broken", False):
                raise
            log.warning("database connection lost; reconnecting and retrying once")
            self.conn = self._reconnect()
            self._reconnect = None
            rows = self._run(statement, values)
        self._reconnect = None
        return rows

    def one(self, statement: Statement, values: Mapping[str, Any]) -> tuple | None:
        """The first row of :meth:`run` (``None`` if it returned none)."""
        rows = self.run(statement, values)
        return rows[0] if rows else None

    def _run(self, statement: Statement, values: Mapping[str, Any]) -> list[tuple]:
        if not self.postgres:
            cur = self.conn.execute(statement.sqlite, values)
            try:
                return cur.fetchall()
            finally:
                cur.close()
        return _pg_run(self.conn, statement, values)

    @contextmanager
    def transaction(self) -> Iterator[Raw]:
        """Several statements committed together (rolled back if the block raises)."""
        if self._in_transaction:  # nested: part of the enclosing transaction
            yield self
            return
        self.conn.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            self.conn.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self.conn.execute("COMMIT")

    # -- values --------------------------------------------------------------------------
    def ts(self, value: datetime | None) -> datetime | str | None:
        """An aware datetime as the ORM stores it (UTC; text on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: store aware datetimes only")
        value = value.astimezone(UTC)
        return value if self.postgres else value.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- PostgreSQL through libpq ------------------------------------------------------------------

_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()


def _pg_run(conn: Any, statement: Statement, values: Mapping[str, Any]) -> list[tuple]:
    from psycopg import pq

    pgconn = conn.pgconn
    names = _prepared.setdefault(conn, set())
    args = [None if (v := values[p]) is None else encode(v) for p, encode in statement.encoders]
    for attempt in (1, 2):
        if statement.pg_name not in names:
            _check(pgconn, pgconn.prepare(statement.pg_name, statement.pg, statement.oids))
            names.add(statement.pg_name)
        result = pgconn.exec_prepared(statement.pg_name, args, statement.formats)
        status = result.status
        if status == pq.ExecStatus.TUPLES_OK:
            oids = [result.ftype(i) for i in range(result.nfields)]
            rows = [tuple(_decode(result.get_value(r, i), oid) for i, oid in enumerate(oids))
                    for r in range(result.ntuples)]
            result.clear()
            return rows
        if status == pq.ExecStatus.COMMAND_OK:
            result.clear()
            return []
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        if attempt == 1 and state and state.decode() in _RETRY_PREPARE:
            names.discard(statement.pg_name)
            with contextlib.suppress(Exception):
                pgconn.exec_(b"DEALLOCATE " + statement.pg_name)
            continue
        _check(pgconn, result)
    raise AssertionError("unreachable")  # pragma: no cover


def _check(pgconn: Any, result: Any) -> None:
    """Raise the psycopg exception matching a failed libpq result."""
    from psycopg import OperationalError, errors, pq

    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return
    message = (result.error_message or pgconn.error_message or b"").decode("utf-8",
                                                                           "replace")
    state = result.error_field(pq.DiagnosticField.SQLSTATE)
    result.clear()
    if pgconn.status == pq.ConnStatus.BAD or not state:
        raise OperationalError(message.strip() or "connection lost")
    raise errors.lookup(state.decode())(message.strip())


# --- connections ----------------------------------------------------------------------------

@contextmanager
def connect(db: Database, raw: Raw | None = None) -> Iterator[Raw]:
    """A :class:`Raw` connection from ``db``'s pool (or ``raw`` itself when given)."""
    if raw is not None:
        yield raw
        return
    fairy = db.engine.raw_connection()
    driver = fairy.driver_connection
    postgres = db.dialect == "postgresql"
    if postgres:
        driver.autocommit = True
    try:
        yield Raw(db.dialect, driver)
    finally:
        try:
            if postgres:
                if driver.info.transaction_status:  # not idle: a statement was cut short
                    driver.rollback()
                driver.autocommit = False
        except Exception:  # noqa: BLE001 - a broken connection must not go back to the pool
            fairy.invalidate()
        fairy.close()


class HotConnections:
    """Connections for the callback endpoint, kept between requests (thread-safe).

    PostgreSQL: plain driver connections in autocommit mode, opened with the engine's
    connection arguments and kept in a LIFO list — checking one out is a list pop, with
    no pool bookkeeping and no pre-ping round trip (the first statement detects a dead
    connection instead, see :meth:`Raw.run`), and the statements prepared on it stay
    prepared. At most ``keep`` idle connections are kept; they are closed by
    :meth:`close`, when the engine is disposed (``FeePay.close()``) and when this object
    is garbage-collected. SQLite: the engine's pool (no ping there).
    """

    def __init__(self, db: Database, keep: int = 16) -> None:
        from sqlalchemy import event

        self.db = db
        self.keep = keep
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle)
        me = weakref.ref(self)
        event.listen(db.engine, "engine_disposed",
                     lambda _engine: (hot := me()) is not None and hot.close())

    def close(self) -> None:
        """Close the idle connections (new ones are opened on demand)."""
        with self._lock:
            idle = self._idle[:]
            self._idle.clear()
        _close_all(idle)

    @contextmanager
    def connection(self) -> Iterator[Raw]:
        if self.db.dialect != "postgresql":
            with connect(self.db) as raw:
                yield raw
            return
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        raw = Raw("postgresql", conn or self._open(),
                  reconnect=self._open if conn is not None else None)
        try:
            yield raw
        finally:
            self._give_back(raw.conn)

    def _open(self) -> Any:
        dialect = self.db.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.db.engine.url)
        conn = dialect.connect(*cargs, **cparams)
        conn.autocommit = True
        return conn

    def _give_back(self, conn: Any) -> None:
        if not conn.closed and conn.info.transaction_status:
            try:  # a statement was cut short inside a transaction
                conn.rollback()
            except Exception:  # noqa: BLE001 - unusable: dropped below
                conn.close()
        if conn.closed:
            return
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(conn)
                return
        conn.close()


def _close_all(idle: list[Any]) -> None:
    while idle:
        with contextlib.suppress(Exception):  # closing at exit: nothing to do about it
            idle.pop().close()
