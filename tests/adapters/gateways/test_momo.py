"""MoMo IPN adapter: documented signature order with our accessKey, statuses, 204 reply."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from adapters.gateways.momo import Momo, raw_signature, signature
from adapters.testing import momo_ipn
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentStatus, RawRequest, RecordResult
from feepay.reference import calc_check_digits

ACCESS, SECRET = "F8BBA842ECF85", "K951B6PE1waDMi640xX08PD3vg6EkVlz"  # MoMo's public test keys
CODE = "FP7K3MQ9XA" + calc_check_digits("7K3MQ9XA")
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
adapter = Momo()
CREDS = Credentials(channel="momo", merchant_id="MOMO",
                    secrets={"access_key": (ACCESS,), "secret_key": (SECRET,)})


def raw(body: bytes) -> RawRequest:
    return RawRequest(method="POST", path="/callbacks/momo/momo", body=body, received_at=NOW)


def test_signed_string_is_the_documented_order() -> None:
    body = {"partnerCode": "MOMO", "orderId": CODE, "requestId": "r1", "amount": 8000,
            "orderInfo": "Le phi", "orderType": "momo_wallet", "transId": 4088878653,
            "resultCode": 0, "message": "Thành công.", "payType": "qr",
            "responseTime": 1751338800000, "extraData": ""}
    expected = (f"accessKey={ACCESS}&amount=8000&extraData=&message=Thành công.&orderId={CODE}"
                "&orderInfo=Le phi&orderType=momo_wallet&partnerCode=MOMO&payType=qr"
                "&requestId=r1&responseTime=1751338800000&resultCode=0&transId=4088878653")
    assert raw_signature(body, ACCESS) == expected
    assert signature(body, ACCESS, SECRET) == hmac.new(
        SECRET.encode(), expected.encode(), hashlib.sha256).hexdigest()


def test_valid_parses_plain_vnd() -> None:
    r = raw(momo_ipn(ACCESS, SECRET, order_id=CODE, amount=8000, response_time=NOW).body)
    adapter.verify(r, CREDS)
    event = adapter.parse(r)
    assert (event.amount, event.reference, event.provider_txn_id) == (8000, CODE, "4088878653")
    assert event.status is PaymentStatus.SUCCESS and event.paid_at == NOW
    assert "signature" not in event.raw


def test_rotation_any_access_secret_pair() -> None:
    creds = Credentials(channel="momo", secrets={"access_key": (ACCESS, "NEWACCESS"),
                                                 "secret_key": ("newsecret", SECRET)})
    adapter.verify(raw(momo_ipn("NEWACCESS", "newsecret", order_id=CODE, amount=1).body), creds)


@pytest.mark.parametrize(("call", "message"), [
    (momo_ipn(ACCESS, "wrong", order_id=CODE, amount=8000), "does not match"),
    (momo_ipn("OTHERACCESS", SECRET, order_id=CODE, amount=8000), "does not match"),
    (momo_ipn(ACCESS, SECRET, order_id=CODE, amount=8000, overrides={"amount": 80000}),
     "does not match"),
    (momo_ipn(ACCESS, SECRET, order_id=CODE, amount=8000, drop=("signature",)), "missing"),
    (momo_ipn(ACCESS, SECRET, order_id=CODE, amount=8000, partner_code="OTHER"), "partner"),
])
def test_refused(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(SignatureError, match=message):
        adapter.verify(raw(call.body), CREDS)


def test_not_json_and_missing_field() -> None:
    with pytest.raises(MalformedCallback, match="not JSON"):
        adapter.verify(raw(b"resultCode=0"), CREDS)
    body = json.loads(momo_ipn(ACCESS, SECRET, order_id=CODE, amount=1).body)
    del body["transId"], body["signature"]
    body["signature"] = signature(body, ACCESS, SECRET)
    r = raw(json.dumps(body).encode())
    adapter.verify(r, CREDS)
    with pytest.raises(MalformedCallback, match="transId"):
        adapter.parse(r)


@pytest.mark.parametrize(("code", "status"), [
    (0, PaymentStatus.SUCCESS), (9000, PaymentStatus.PENDING), (7000, PaymentStatus.PENDING),
    (1006, PaymentStatus.FAILED), (1001, PaymentStatus.FAILED)])
def test_result_codes(code: int, status: PaymentStatus) -> None:
    r = raw(momo_ipn(ACCESS, SECRET, order_id=CODE, amount=1, result_code=code).body)
    assert adapter.parse(r).status is status


def test_replies() -> None:
    ok = adapter.reply(RecordResult(event_id=1, status=PaymentStatus.SUCCESS, amount=1))
    assert (ok.status, ok.body) == (204, b"")
    bad = adapter.reply_rejected(SignatureError("signature does not match"))
    assert bad.status == 401 and json.loads(bad.body)["resultCode"] == 97
