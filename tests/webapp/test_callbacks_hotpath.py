"""The callback hot path: the recording rules on both databases (PostgreSQL computes them
in SQL, SQLite in Python), channel credentials cached per channel version, connections kept
between requests, and the driver-level statement layer."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text, update

from adapters import testing as T
from adapters.testing import SECRETS, CallbackWorld, callback_world
from feepay import dbapi
from feepay import reference as codes
from feepay.api import FeePay
from feepay.models import (
    PaymentEvent,
    PaymentFlag,
    PaymentStatus,
    ReferenceState,
)
from feepay.money import now_utc
from feepay.storage.tables import ReferenceRow
from webapp import create_app

POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
HOOK = SECRETS["bankhook"]["webhook_secret"]
F = PaymentFlag


@pytest.fixture
def world(fp: FeePay) -> CallbackWorld:
    return callback_world(fp)


def hook(client: FlaskClient, txn: str, amount: int, memo: str, *,
         secret: str = HOOK) -> int:
    call = T.bank_webhook(secret, txn_id=txn, amount=amount, memo=memo)
    return client.post("/callbacks/bankhook/bankhook", data=call.body,
                       headers=call.headers).status_code


# --- the recording rules, case by case, on both databases ----------------------------------

DUE = 50_000
STATES = {  # name: (state, amount_paid, expired)
    "issued": ("issued", 0, False), "issued-late": ("issued", 0, True),
    "partial": ("partially_paid", 20_000, False), "partial-late": ("partially_paid", 20_000, True),
    "paid": ("paid", DUE, False), "overpaid": ("overpaid", 60_000, False),
    "settled": ("settled", DUE, False), "cancelled": ("cancelled", 0, False),
    "expired": ("expired", 0, True),
}


def expected(state: str, paid: int, late: bool, status: PaymentStatus, amount: int,
             same_account: bool) -> tuple[bool, set[PaymentFlag]]:
    """The documented rules (docs/callbacks.md), written out independently of the code."""
    success = status is PaymentStatus.SUCCESS
    payable = state in ("issued", "partially_paid", "paid", "overpaid") and not (
        state == "issued" and late)
    if success and payable:
        outstanding = DUE - paid if paid < DUE else DUE
        flags = {F.AMOUNT_MISMATCH} if amount != outstanding else set()
        flags |= {F.DUPLICATE_PAYMENT} if paid >= DUE else set()
        flags |= {F.PAID_AFTER_EXPIRY} if late else set()
        flags |= set() if same_account else {F.ACCOUNT_MISMATCH}
        return True, flags
    if not success:
        return False, set()
    outstanding = DUE - paid if state in ("issued", "partially_paid", "expired") else DUE
    flags = {F.AMOUNT_MISMATCH} if amount != outstanding else set()
    flags |= {F.DUPLICATE_PAYMENT} if state == "settled" else set()
    flags |= {F.PAID_AFTER_EXPIRY} if state == "expired" or late else set()
    flags |= {F.REFERENCE_CANCELLED} if state == "cancelled" else set()
    return False, flags


def test_recording_rules_match_the_documented_table(fp: FeePay, world: CallbackWorld) -> None:
    """Every reference state × event status × amount × account: what is applied, the
    flags stored and returned, the reference afterwards, and that a redelivery changes
    nothing — identical on PostgreSQL (one SQL statement) and SQLite (Python rules)."""
    own = fp.channels.get("bankhook")
    fp.channels.add("other-acct", "bankhook", secrets={"webhook_secret": "x"},
                    account_id=world.other_account_id)
    other = fp.channels.get("other-acct")
    now = now_utc()
    cases = itertools.product(STATES, PaymentStatus, (DUE, 20_000, 30_000),
                              (True, False))
    for n, (name, status, amount, same_account) in enumerate(cases):
        state, paid, late = STATES[name]
        ref = world.issue(fp, f"HS-RULE-{n}")
        with fp.db.session() as s:
            s.execute(update(ReferenceRow).where(ReferenceRow.code == ref.code).values(
                state=state, amount_paid=paid,
                cancelled_at=now if state == "cancelled" else None,
                expires_at=now - timedelta(hours=1) if late else now + timedelta(days=1)))
        event = PaymentEvent(provider="bankhook", provider_txn_id=f"RULE{n}",
                             amount=amount, paid_at=now, status=status,
                             memo=f"thanh toan {ref.code}")
        channel = own if same_account else other
        result = fp.payments.record(event, channel=channel)
        applied, flags = expected(state, paid, late, status, amount, same_account)
        case = (name, status.value, amount, same_account)
        assert (result.applied, set(result.flags)) == (applied, flags), case
        assert result.reference == ref.code and result.reference_found, case
        stored = next(e for e in fp.payments.list(reference=ref.code)
                      if e.provider_txn_id == f"RULE{n}")
        assert (stored.applied, set(stored.flags)) == (applied, flags), case
        after = fp.references.get(ref.code)
        assert after.amount_paid == paid + (amount if applied else 0), case
        if applied:
            new = paid + amount
            assert after.state is (ReferenceState.PARTIALLY_PAID if new < DUE else
                                   ReferenceState.PAID if new == DUE else
                                   ReferenceState.OVERPAID), case
            assert result.state_after is after.state, case
        else:
            assert after.state.value == state, case
        again = fp.payments.record(event, channel=channel)
        assert again.duplicate and again.event_id == result.event_id, case
        assert (again.applied, set(again.flags)) == (applied, flags), case
        assert fp.references.get(ref.code).amount_paid == after.amount_paid, case


def test_no_reference_and_unknown_reference(fp: FeePay, world: CallbackWorld) -> None:
    channel = fp.channels.get("bankhook")
    a, b = world.issue(fp, "HS-U1"), world.issue(fp, "HS-U2")
    never = codes.generate(random.Random(7))  # well-formed, never issued
    cases = {"no code here": (None, {F.UNKNOWN_REFERENCE}),
             f"{a.code} {b.code}": (None, {F.AMBIGUOUS_REFERENCE}),
             f"ck {never}": (None, None)}
    for n, (memo, (code, flags)) in enumerate(cases.items()):
        for status in PaymentStatus:
            event = PaymentEvent(provider="bankhook", provider_txn_id=f"UNK{n}{status}",
                                 amount=10_000, paid_at=now_utc(), status=status, memo=memo)
            result = fp.payments.record(event, channel=channel)
            assert not result.applied and not result.reference_found
            if flags is None:  # linked by code, but no such reference
                assert result.reference == never
                assert set(result.flags) == {F.UNKNOWN_REFERENCE}
            else:
                assert (result.reference, set(result.flags)) == (code, flags)
    assert fp.references.get(a.code).amount_paid == 0


# --- channel credentials: cached per version ------------------------------------------------

def test_cached_credentials_follow_every_change_in_every_process(
        db_url: str, fp: FeePay, world: CallbackWorld) -> None:
    """Two handles stand for two worker processes: a rotation or retirement made through
    one is honoured by the other on the very next request (no time window), and an
    unchanged channel is served from the cache without reading it again."""
    other = FeePay.open(db_url)
    try:
        client_a = create_app(fp=fp).test_client()
        client_b = create_app(fp=other).test_client()
        ref = world.issue(fp, "HS-CACHE")
        assert hook(client_b, "C1", 1000, ref.code) == 200
        cached = other.channels._cache["bankhook"]
        assert hook(client_b, "C2", 1000, ref.code) == 200
        assert other.channels._cache["bankhook"] is cached  # not read again
        fp.channels.rotate_secret("bankhook", "webhook_secret", "second",
                                  retire_previous=True)
        assert hook(client_b, "C3", 1000, ref.code) == 401  # the old secret, at once
        assert hook(client_b, "C4", 1000, ref.code, secret="second") == 200
        fp.channels.set_active("bankhook", False)
        assert hook(client_b, "C5", 1000, ref.code, secret="second") == 404
        fp.channels.set_active("bankhook", True)
        assert hook(client_a, "C6", 1000, ref.code, secret="second") == 200
        assert hook(client_b, "C7", 1000, ref.code, secret="second") == 200
        assert fp.references.get(ref.code).amount_paid == 5000  # C1 C2 C4 C6 C7
    finally:
        other.close()


# --- connections kept between requests --------------------------------------------------------

@POSTGRES
def test_a_connection_cut_by_the_server_is_replaced(fp: FeePay, world: CallbackWorld) -> None:
    app = create_app(fp=fp)
    client = app.test_client()
    ref = world.issue(fp, "HS-CUT")
    assert hook(client, "K1", 1000, ref.code) == 200
    kept = app.extensions["feepay.pipeline"]._connections._idle
    pids = [c.info.backend_pid for c in kept]
    assert pids
    with fp.db.engine.connect() as conn:  # the server restarts / a proxy cuts idle links
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert hook(client, "K2", 1000, ref.code) == 200
    assert hook(client, "K3", 1000, ref.code) == 200
    assert fp.references.get(ref.code).amount_paid == 3000
    assert fp.inbox.counts()["processed"] == 3
    assert all(c.info.backend_pid not in pids for c in kept)


# --- the statement layer --------------------------------------------------------------------

@POSTGRES
def test_driver_level_statements(fp: FeePay) -> None:
    hot = dbapi.HotConnections(fp.db)
    echo = dbapi.Statement("test_echo", "SELECT :n + 1, :t, :b, :n IS NULL, :when > now()",
                           {"n": "int", "t": "text", "b": "bool", "when": "ts"})
    divide = dbapi.Statement("test_divide", "SELECT 1 / :n", {"n": "int"})
    with hot.connection() as raw:
        later = now_utc() + timedelta(hours=1)
        assert raw.one(echo, {"n": 41, "t": "Lệ phí ₫", "b": True, "when": later}) == (
            42, "Lệ phí ₫", True, False, True)
        assert raw.one(echo, {"n": None, "t": None, "b": False, "when": later}) == (
            None, None, False, True, True)
        with pytest.raises(psycopg.errors.DivisionByZero):
            raw.run(divide, {"n": 0})
        raw.conn.pgconn.exec_(b"DEALLOCATE ALL")  # prepared statements gone: re-prepared
        assert raw.one(divide, {"n": 1}) == (1,)
    with pytest.raises(ValueError, match="no type for :x"):
        dbapi.Statement("bad", "SELECT :x", {})


def test_dbapi_timestamps_read_back_through_the_orm(fp: FeePay, world: CallbackWorld) -> None:
    """Rows written at the driver level read back identically through the ORM."""
    client = create_app(fp=fp).test_client()
    ref = world.issue(fp, "HS-TS")
    before = now_utc()
    assert hook(client, "TS1", 1000, ref.code) == 200
    item = fp.inbox.list()[0]
    event = fp.payments.list(reference=ref.code)[0]
    assert item.request.received_at.tzinfo is not None
    assert before <= item.request.received_at <= now_utc()
    assert item.processed_at >= item.request.received_at
    assert event.received_at == item.request.received_at
    assert event.inbox_id == item.id and item.event_id == event.id
