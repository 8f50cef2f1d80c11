"""The callbacks endpoint, end to end on SQLite and PostgreSQL (Flask test client).

For every adapter: valid, duplicate, wrong secret, tampered field, missing field, wrong
amount, unknown reference, replayed old timestamp (where signed), oversize body and a
not-JSON body — each with the exact reply and the exact resulting database state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from adapters import testing as T
from adapters.banks.sepay import hmac_signature
from adapters.testing import SECRETS, CallbackWorld, SignedCall, callback_world
from feepay.api import FeePay
from feepay.reference import calc_check_digits
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_callbacks import InboxRow, PaymentEventRow
from webapp import create_app

UNKNOWN = "FP22222222" + calc_check_digits("22222222")
AMOUNT = 50_000  # LP-T-01


@pytest.fixture
def world(fp: FeePay) -> CallbackWorld:
    return callback_world(fp)


@pytest.fixture
def client(fp: FeePay, world: CallbackWorld) -> Iterator[FlaskClient]:
    app = create_app({"CALLBACK_MAX_BYTES": 4096}, fp=fp)
    yield app.test_client()


def send(client: FlaskClient, key: str, call: SignedCall) -> tuple[int, Any]:
    adapter = key.split("-")[0]
    url = call.url(f"/callbacks/{adapter}/{key}")
    if call.method == "GET":
        resp = client.get(url, headers=call.headers)
    else:
        resp = client.post(url, data=call.body, headers=call.headers)
    body = resp.get_data()
    return resp.status_code, (json.loads(body) if body else None)


def db_state(fp: FeePay, code: str | None = None) -> dict[str, Any]:
    with fp.db.session() as s:
        events = s.scalars(select(PaymentEventRow).order_by(PaymentEventRow.id)).all()
        inbox = dict(s.execute(select(InboxRow.state, func.count()).group_by(InboxRow.state))
                     .all())
        ref = s.scalar(select(ReferenceRow).where(ReferenceRow.code == code)) if code else None
        return {
            "events": [(e.provider_txn_id, e.status, e.amount, e.reference_code, e.flags,
                        e.applied) for e in events],
            "inbox": inbox,
            "ref": (ref.state, ref.amount_paid) if ref else None,
        }


def last_inbox(fp: FeePay) -> InboxRow:
    with fp.db.session() as s:
        return s.scalar(select(InboxRow).order_by(InboxRow.id.desc()).limit(1))


# --- one kit per adapter: how to build its calls and what it answers ----------------------

@dataclass
class Kit:
    key: str
    make: Callable[..., SignedCall]          # (code, amount, txn, secret=None) -> call
    missing: Callable[[str, int], SignedCall]  # well signed, a required field absent
    ok: tuple[int, Any]
    dup: tuple[int, Any]
    bad_sig: tuple[int, Any]
    malformed: tuple[int, Any]
    mismatch: tuple[int, Any]
    unknown: tuple[int, Any]
    txn: Callable[[int], str] = str
    old: Callable[[str, int], SignedCall] | None = None
    not_json: Callable[[], SignedCall] | None = None


S = SECRETS
VNP_OK = (200, {"RspCode": "00", "Message": "Confirm Success"})
SUCCESS = (200, {"success": True})


def _vnpay(code: str, amount: int, txn: int, secret: str | None = None) -> SignedCall:
    return T.vnpay_ipn(secret or S["vnpay"]["hash_secret"], txn_ref=code, amount=amount,
                       txn_no=str(txn))


def _momo(code: str, amount: int, txn: int, secret: str | None = None, **kw: Any) -> SignedCall:
    return T.momo_ipn(S["momo"]["access_key"], secret or S["momo"]["secret_key"],
                      order_id=code, amount=amount, trans_id=txn, **kw)


def _zalo(code: str, amount: int, txn: int, secret: str | None = None, **kw: Any) -> SignedCall:
    return T.zalopay_callback(secret or S["zalopay"]["key2"], app_trans_id=f"250701_{code}",
                              amount=amount, zp_trans_id=txn, **kw)


def _sepay(code: str, amount: int, txn: int, secret: str | None = None,
           **kw: Any) -> SignedCall:
    return T.sepay_webhook(txn_id=txn, amount=amount, content=f"CT DEN:0123 {code} NGUYEN VAN A",
                           api_key=secret or S["sepay"]["api_key"], **kw)


def _sepay_hmac(code: str, amount: int, txn: int, secret: str | None = None,
                **kw: Any) -> SignedCall:
    return T.sepay_webhook(txn_id=txn, amount=amount, content=f"{code.lower()} nop le phi",
                           webhook_secret=secret or S["sepay-hmac"]["webhook_secret"], **kw)


def _casso(code: str, amount: int, txn: int, secret: str | None = None,
           **kw: Any) -> SignedCall:
    return T.casso_webhook(secret or S["casso"]["checksum_key"], txn_id=txn, amount=amount,
                           description=f"MBVCB.123.{code}.CT tu 0123", **kw)


def _hook(code: str, amount: int, txn: int, secret: str | None = None,
          **kw: Any) -> SignedCall:
    return T.bank_webhook(secret or S["bankhook"]["webhook_secret"], txn_id=f"FT{txn}",
                          amount=amount, memo=f"{code} NGUYEN VAN A chuyen tien", **kw)


def _now_s() -> int:
    from feepay.money import now_utc

    return int(now_utc().timestamp())


def _signed_sepay_body(body: bytes) -> SignedCall:
    t = str(_now_s())
    sig = hmac_signature(t, body, S["sepay-hmac"]["webhook_secret"])
    return SignedCall("POST", body, headers={"X-SePay-Timestamp": t,
                                             "X-SePay-Signature": f"sha256={sig}"})


KITS = [
    Kit("vnpay", _vnpay,
        missing=lambda code, txn: T.vnpay_ipn(S["vnpay"]["hash_secret"], txn_ref=code,
                                              amount=AMOUNT, txn_no=str(txn),
                                              unsigned=("vnp_Amount",)),
        ok=VNP_OK, dup=(200, {"RspCode": "02", "Message": "Order already confirmed"}),
        bad_sig=(200, {"RspCode": "97", "Message": "Invalid signature"}),
        malformed=(200, {"RspCode": "99", "Message": "Unknown error"}),
        mismatch=(200, {"RspCode": "04", "Message": "Invalid amount"}),
        unknown=(200, {"RspCode": "01", "Message": "Order not found"}),
        not_json=lambda: SignedCall("GET", query_string="this=is&not=an-ipn")),
    Kit("momo", _momo,
        missing=lambda code, txn: _momo(code, AMOUNT, txn, unsigned=("transId",)),
        ok=(204, None), dup=(204, None),
        bad_sig=(401, {"resultCode": 97, "message": "signature does not match"}),
        malformed=(400, {"resultCode": 99, "message": "missing field(s): transId"}),
        mismatch=(204, None), unknown=(204, None),
        not_json=lambda: SignedCall("POST", b"not json", headers={
            "Content-Type": "application/json"})),
    Kit("zalopay", _zalo,
        missing=lambda code, txn: _zalo(code, AMOUNT, txn, unsigned=("zp_trans_id",)),
        ok=(200, {"return_code": 1, "return_message": "success"}),
        dup=(200, {"return_code": 2, "return_message": "already processed"}),
        bad_sig=(200, {"return_code": -1, "return_message": "mac not equal"}),
        malformed=(200, {"return_code": -1, "return_message": "missing field(s): zp_trans_id"}),
        mismatch=(200, {"return_code": 1, "return_message": "success"}),
        unknown=(200, {"return_code": 1, "return_message": "success"}),
        not_json=lambda: SignedCall("POST", b"data=1&mac=2")),
    Kit("sepay", _sepay,
        missing=lambda code, txn: _sepay(code, AMOUNT, txn, overrides={"transferAmount": None}),
        ok=SUCCESS, dup=SUCCESS,
        bad_sig=(401, {"success": False, "message": "API key does not match"}),
        malformed=(400, {"success": False, "message": "missing field(s): transferAmount"}),
        mismatch=SUCCESS, unknown=SUCCESS,
        not_json=lambda: SignedCall("POST", b"<xml/>", headers={
            "Authorization": f"Apikey {S['sepay']['api_key']}"})),
    Kit("sepay-hmac", _sepay_hmac,
        missing=lambda code, txn: _sepay_hmac(code, AMOUNT, txn, overrides={"id": None}),
        ok=SUCCESS, dup=SUCCESS,
        bad_sig=(401, {"success": False, "message": "X-SePay-Signature does not match"}),
        malformed=(400, {"success": False, "message": "missing field(s): id"}),
        mismatch=SUCCESS, unknown=SUCCESS,
        old=lambda code, txn: _sepay_hmac(code, AMOUNT, txn, stamp=_now_s() - 600),
        not_json=lambda: _signed_sepay_body(b"nope")),
    Kit("casso", _casso,
        missing=lambda code, txn: _casso(code, AMOUNT, txn, drop=("amount",)),
        ok=SUCCESS, dup=SUCCESS,
        bad_sig=(401, {"success": False, "message": "X-Casso-Signature does not match"}),
        malformed=(400, {"success": False, "message": "missing field(s): amount"}),
        mismatch=SUCCESS, unknown=SUCCESS,
        old=lambda code, txn: _casso(code, AMOUNT, txn, stamp_ms=(_now_s() - 600) * 1000),
        not_json=lambda: SignedCall("POST", b"{oops", headers={
            "X-Casso-Signature": f"t={_now_s() * 1000},v1=00"})),
    Kit("bankhook", _hook, txn=lambda n: f"FT{n}",
        missing=lambda code, txn: _hook(code, AMOUNT, txn, drop=("account_number",)),
        ok=(200, {"ok": True, "duplicate": False, "flags": []}),
        dup=(200, {"ok": True, "duplicate": True, "flags": []}),
        bad_sig=(401, {"ok": False, "error": "Feepay-Signature does not match"}),
        malformed=(400, {"ok": False, "error": "account_number: Field required"}),
        mismatch=(200, {"ok": True, "duplicate": False, "flags": ["amount_mismatch"]}),
        unknown=(200, {"ok": True, "duplicate": False, "flags": ["unknown_reference"]}),
        old=lambda code, txn: _hook(code, AMOUNT, txn, stamp=_now_s() - 600),
        not_json=lambda: T.bank_webhook(S["bankhook"]["webhook_secret"], txn_id="X",
                                         amount=1, memo="", raw_body=b"not json")),
]
KIT_IDS = [k.key for k in KITS]


def assert_reply(got: tuple[int, Any], expected: tuple[int, Any]) -> None:
    status, body = got
    assert status == expected[0]
    if isinstance(expected[1], dict) and isinstance(body, dict):
        assert {k: body.get(k) for k in expected[1]} == expected[1]
    else:
        assert body == expected[1]


@pytest.fixture(params=KITS, ids=KIT_IDS)
def kit(request: pytest.FixtureRequest) -> Kit:
    return request.param


def test_accepted(fp: FeePay, world: CallbackWorld, client: FlaskClient, kit: Kit) -> None:
    """Valid → paid; the same delivery again → duplicate reply, nothing changes; a wrong
    amount and an unknown reference are recorded and flagged, never dropped."""
    ref = world.issue(fp, "HS-VALID")
    call = kit.make(ref.code, AMOUNT, 700101)
    assert_reply(send(client, kit.key, call), kit.ok)
    paid = (kit.txn(700101), "success", AMOUNT, ref.code, "", True)
    assert db_state(fp, ref.code) == {"events": [paid], "inbox": {"processed": 1},
                                      "ref": ("paid", AMOUNT)}

    assert_reply(send(client, kit.key, call), kit.dup)
    assert db_state(fp, ref.code) == {"events": [paid], "inbox": {"processed": 2},
                                      "ref": ("paid", AMOUNT)}
    assert last_inbox(fp).reason == "duplicate delivery"

    short = world.issue(fp, "HS-AMOUNT")
    assert_reply(send(client, kit.key, kit.make(short.code, 30_000, 700105)), kit.mismatch)
    mismatch = (kit.txn(700105), "success", 30_000, short.code, "amount_mismatch", True)
    assert db_state(fp, short.code) == {"events": [paid, mismatch], "inbox": {"processed": 3},
                                        "ref": ("partially_paid", 30_000)}

    assert_reply(send(client, kit.key, kit.make(UNKNOWN, AMOUNT, 700106)), kit.unknown)
    unknown = (kit.txn(700106), "success", AMOUNT, UNKNOWN, "unknown_reference", False)
    assert db_state(fp) == {"events": [paid, mismatch, unknown], "inbox": {"processed": 4},
                            "ref": None}


def test_rejected(fp: FeePay, world: CallbackWorld, client: FlaskClient, kit: Kit) -> None:
    """Wrong secret, tampered field, missing field, replayed old timestamp (where signed),
    oversize body, not-JSON body: each answered as the provider expects, each leaving
    only its own inbox row (rejected, with the reason) — and none poisons the genuine one."""
    ref = world.issue(fp, "HS-REJECT")
    untouched = {"events": [], "ref": ("issued", 0)}
    rejected = 0

    def check(reason_prefix: str) -> None:
        nonlocal rejected
        rejected += 1
        assert db_state(fp, ref.code) == {**untouched, "inbox": {"rejected": rejected}}
        assert last_inbox(fp).reason.startswith(reason_prefix)

    forged = kit.make(ref.code, AMOUNT, 700102, secret="not-the-secret")
    assert_reply(send(client, kit.key, forged), kit.bad_sig)
    check("signature:")
    assert last_inbox(fp).body == forged.body

    call = kit.make(ref.code, AMOUNT, 700102)
    tampered = SignedCall(call.method, call.body.replace(b"50000", b"90000"),
                          call.query_string.replace("5000000", "9000000"), call.headers)
    assert tampered != call
    if kit.key != "sepay":  # API-key mode cannot see tampering: test_sepay_apikey_tampering
        assert_reply(send(client, kit.key, tampered), kit.bad_sig)
        check("signature:")

    assert_reply(send(client, kit.key, kit.missing(ref.code, 700104)), kit.malformed)
    check("malformed:")

    if kit.old:
        status, body = send(client, kit.key, kit.old(ref.code, 700107))
        assert status == 401 and "tolerance 300" in json.dumps(body)
        check("signature:")

    big = SignedCall("POST", call.body + b" " * 5000, call.query_string, call.headers)
    assert send(client, kit.key, big) == (413, {"error": "request body too large"})
    check("body too large")
    row = last_inbox(fp)
    assert (row.body, row.body_size) == (b"", len(big.body))
    assert row.reason == f"body too large: {len(big.body)} bytes > limit 4096"

    status, body = send(client, kit.key, kit.not_json())
    if kit.key == "vnpay":  # a GET without vnp_SecureHash
        assert (status, body) == (200, {"RspCode": "97", "Message": "Invalid signature"})
        check("signature: missing vnp_SecureHash")
    elif kit.key == "zalopay":
        assert (status, body["return_code"]) == (200, -1)
        check("malformed: body: the body is not JSON")
    else:
        assert status == 400 and "not JSON" in json.dumps(body)
        check("malformed:")

    # the genuine delivery of the forged transaction still goes through
    assert_reply(send(client, kit.key, call), kit.ok)
    assert db_state(fp, ref.code)["ref"] == ("paid", AMOUNT)


def test_sepay_apikey_tampering(fp: FeePay, world: CallbackWorld,
                                client: FlaskClient) -> None:
    """API-key mode authenticates the sender, not the body: a tampered amount gets in,
    flagged for reconciliation (the statement shows the real credit). Prefer HMAC mode."""
    ref = world.issue(fp, "HS-SEPAY")
    call = _sepay(ref.code, AMOUNT, 700103)
    tampered = SignedCall(call.method, call.body.replace(b"50000", b"90000"), "", call.headers)
    assert_reply(send(client, "sepay", tampered), SUCCESS)
    assert db_state(fp, ref.code)["events"] == [
        ("700103", "success", 90_000, ref.code, "amount_mismatch", True)]
