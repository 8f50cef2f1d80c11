"""Casso webhook V2: Casso's published signature example, tolerance, parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from adapters.banks.casso import Casso, canonical_json, signature
from adapters.testing import casso_webhook
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentStatus, RawRequest

adapter = Casso()

# Published by Casso: CassoHQ/casso-webhook-v2-verify-signature, python.py
VECTOR_KEY = "mgExMrjj4i7a1p8Cs6LmFbpCd8lbw4sSX4LZXPag7TKazeIogtR90tvWYTkwQbvs"
VECTOR_BODY = {"error": 0, "data": {
    "id": 0, "reference": "MA_GIAO_DICH_THU_NGHIEM", "description": "giao dich thu nghiem",
    "amount": 599000, "runningBalance": 25000000, "transactionDateTime": "2024-10-03 15:06:37",
    "accountNumber": "88888888", "bankName": "VPBank", "bankAbbreviation": "VPB",
    "virtualAccountNumber": "", "virtualAccountName": "", "counterAccountName": "NGUYEN VAN A",
    "counterAccountNumber": "8888888888", "counterAccountBankId": "970415",
    "counterAccountBankName": "VietinBank"}}
VECTOR_HEADER = ("t=1727948258788,v1=ed0a4bd2e826d5cb69988cdb141e6c1a080e21f3b57eb72cd78192220"
                 "042b9e7dde0868fc667faea8e224900fa7904e7c88dfa098032fb2d6b6996856e8b7ff3")
VECTOR_TIME = datetime.fromtimestamp(1727948258788 / 1000, UTC)
KEY = "casso-key"
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)


def creds(key: str = KEY, tolerance: int | None = None) -> Credentials:
    settings = {} if tolerance is None else {"tolerance_seconds": tolerance}
    return Credentials(channel="casso", settings=settings, secrets={"checksum_key": (key,)})


def raw(body: bytes, header: str | None, at: datetime = NOW) -> RawRequest:
    headers = {"x-casso-signature": header} if header else {}
    return RawRequest(method="POST", path="/", headers=headers, body=body, received_at=at)


def test_published_vector_whole_body_sorted() -> None:
    assert signature(VECTOR_BODY, "1727948258788", VECTOR_KEY) == VECTOR_HEADER.split("v1=")[1]
    body = json.dumps(VECTOR_BODY, indent=2).encode()  # any layout: Casso signs the sorted form
    r = raw(body, VECTOR_HEADER, VECTOR_TIME + timedelta(seconds=3))
    adapter.verify(r, creds(VECTOR_KEY))
    event = adapter.parse(r)
    assert (event.provider_txn_id, event.amount, event.bank_ref) == \
        ("0", 599000, "MA_GIAO_DICH_THU_NGHIEM")
    assert event.paid_at == datetime(2024, 10, 3, 8, 6, 37, tzinfo=UTC)
    assert event.payer_name == "NGUYEN VAN A" and event.status is PaymentStatus.SUCCESS


def test_canonical_json_is_sorted_compact() -> None:
    assert canonical_json({"b": {"d": 1, "c": "đ"}, "a": [2]}) == '{"a":[2],"b":{"c":"đ","d":1}}'


def test_non_ascii_accepted_in_either_escaping() -> None:
    call = casso_webhook(KEY, txn_id=5, amount=1000, description="Chuyển khoản lệ phí",
                         stamp_ms=int(NOW.timestamp() * 1000))
    adapter.verify(raw(call.body, call.headers["X-Casso-Signature"]), creds())
    body = json.loads(call.body)
    t = str(int(NOW.timestamp() * 1000))
    ascii_sig = signature(body, t, KEY, ascii_only=True)
    adapter.verify(raw(call.body, f"t={t},v1={ascii_sig}"), creds())


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing"),
    ("v1=abc", "no valid t="),
    ("t=123", "no v1="),
])
def test_malformed_headers(header: str | None, message: str) -> None:
    call = casso_webhook(KEY, txn_id=5, amount=1000, description="x")
    with pytest.raises(SignatureError, match=message):
        adapter.verify(raw(call.body, header), creds())


def test_wrong_key_tampered_and_old_timestamp() -> None:
    stamp = int(NOW.timestamp() * 1000)
    wrong = casso_webhook("other", txn_id=5, amount=1000, description="x", stamp_ms=stamp)
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(raw(wrong.body, wrong.headers["X-Casso-Signature"]), creds())
    tampered = casso_webhook(KEY, txn_id=5, amount=1000, description="x", stamp_ms=stamp,
                             overrides={"amount": 9000})
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(raw(tampered.body, tampered.headers["X-Casso-Signature"]), creds())
    old = casso_webhook(KEY, txn_id=5, amount=1000, description="x", stamp_ms=stamp - 301_000)
    with pytest.raises(SignatureError, match="tolerance 300"):
        adapter.verify(raw(old.body, old.headers["X-Casso-Signature"]), creds())
    adapter.verify(raw(old.body, old.headers["X-Casso-Signature"]), creds(tolerance=600))


def test_debit_ignored_and_missing_fields() -> None:
    call = casso_webhook(KEY, txn_id=5, amount=-1000, description="rut tien")
    assert adapter.parse(raw(call.body, None)) is None
    bad = casso_webhook(KEY, txn_id=5, amount=1000, description="x",
                        overrides={"transactionDateTime": None})
    with pytest.raises(MalformedCallback, match="transactionDateTime"):
        adapter.parse(raw(bad.body, None))
    with pytest.raises(MalformedCallback, match="data"):
        adapter.parse(raw(b'{"error":0,"data":[]}', None))
