"""VNPAY IPN adapter: signature recipe (published vectors), verify, parse, reply codes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest

from adapters.gateways.vnpay import Vnpay, hash_data, php_urlencode, secure_hash
from adapters.testing import vnpay_ipn
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import (
    Credentials,
    PaymentFlag,
    PaymentStatus,
    RawRequest,
    RecordResult,
    ReferenceState,
)
from feepay.reference import calc_check_digits

SECRET = "test_secret"
CODE = "FP7K3MQ9XA" + calc_check_digits("7K3MQ9XA")
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
adapter = Vnpay()

# Published vector: the vnpay npm library's test suite (test/verify-ipn-call.test.ts)
PUBLISHED = {
    "vnp_Amount": "1000000", "vnp_BankCode": "NCB", "vnp_BankTranNo": "VNP14422574",
    "vnp_CardType": "ATM", "vnp_OrderInfo": "Thanh toan don hang 2024-05-21T02:17:31.249Z",
    "vnp_PayDate": "20240521091806", "vnp_ResponseCode": "00",
    "vnp_TmnCode": "TEST_TMN_CODE", "vnp_TransactionNo": "14422574",
    "vnp_TransactionStatus": "00", "vnp_TxnRef": "1716257871703"}
PUBLISHED_HASH = ("649982421beb422556a1374713c74e58e716ecbd05007c0c0e1f7effdfaf361d"
                  "bf146889ca446139afe11b9954c4d5c486e99e3b86fcfab6957f29eb0be72895")
PUBLISHED_FAILED_HASH = ("503194f6d93b57b357b2d1d09742565e67e86d771352c5dca4fc8d39df3d392c"
                         "6b3809add9405f97cfb9631f445e36c80656cfbf47eac67d97fa165865c13e1b")


def creds(*secrets: str, merchant: str | None = None) -> Credentials:
    return Credentials(channel="vnp", merchant_id=merchant,
                       secrets={"hash_secret": secrets or (SECRET,)})


def raw_from(fields: dict[str, str]) -> RawRequest:
    return RawRequest(method="GET", path="/callbacks/vnpay/vnp",
                      query_string=urlencode(fields), received_at=NOW)


def test_published_vectors() -> None:
    assert secure_hash(PUBLISHED, SECRET) == PUBLISHED_HASH
    failed = {**PUBLISHED, "vnp_ResponseCode": "99"}
    assert secure_hash(failed, SECRET) == PUBLISHED_FAILED_HASH


def test_published_vector_verifies_and_parses() -> None:
    raw = raw_from({**PUBLISHED, "vnp_SecureHash": PUBLISHED_HASH})
    adapter.verify(raw, creds())
    event = adapter.parse(raw)
    assert event.amount == 10_000  # ×100 undone
    assert event.provider_txn_id == "14422574"
    assert event.status is PaymentStatus.SUCCESS
    assert event.paid_at == datetime(2024, 5, 21, 2, 18, 6, tzinfo=UTC)  # GMT+7 → UTC
    assert event.bank_ref == "VNP14422574"
    assert event.reference is None and event.order_id == "1716257871703"


def test_recipe_is_php_urlencode_sorted_hmac_sha512() -> None:
    """Independent re-statement of the recipe: space → '+', ':' → %3A, '~' → %7E."""
    fields = {"vnp_TxnRef": CODE, "vnp_OrderInfo": "Le phi: ho so ~1", "vnp_Amount": "800000",
              "vnp_SecureHashType": "HmacSHA512", "other": "ignored"}
    expected_data = ("vnp_Amount=800000&vnp_OrderInfo=Le+phi%3A+ho+so+%7E1&"
                     f"vnp_TxnRef={CODE}")
    assert hash_data(fields) == expected_data
    assert secure_hash(fields, "k") == hmac.new(b"k", expected_data.encode(),
                                                hashlib.sha512).hexdigest()
    assert php_urlencode("a b/c") == "a+b%2Fc"


def test_valid_and_rotation() -> None:
    raw = vnpay_ipn("new-secret", txn_ref=CODE, amount=8000).raw(NOW)
    adapter.verify(raw, creds("old-secret", "new-secret"))
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(raw, creds("old-secret"))


@pytest.mark.parametrize(("mutate", "message"), [
    ({"vnp_Amount": "900000"}, "does not match"),          # tampered amount
    ({"vnp_TxnRef": "FP0000000000"}, "does not match"),     # tampered order
    ({"vnp_SecureHash": ""}, "missing vnp_SecureHash"),
    ({"vnp_SecureHash": "zz" * 64}, "does not match"),
])
def test_tampered_or_missing_signature(mutate: dict[str, str], message: str) -> None:
    call = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000, overrides=mutate)
    with pytest.raises(SignatureError, match=message):
        adapter.verify(call.raw(NOW), creds())


def test_wrong_secret_and_wrong_terminal() -> None:
    call = vnpay_ipn("wrong", txn_ref=CODE, amount=8000)
    with pytest.raises(SignatureError):
        adapter.verify(call.raw(NOW), creds())
    other_tmn = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000, tmn_code="OTHER")
    with pytest.raises(SignatureError, match="terminal"):
        adapter.verify(other_tmn.raw(NOW), creds(merchant="FEEPAY01"))


def test_missing_field_is_malformed_after_valid_signature() -> None:
    """Signed correctly without vnp_Amount: verify passes, parse refuses, naming the field."""
    call = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000, drop=("vnp_Amount",))
    fields = dict(parse_qsl(call.query_string))
    fields["vnp_SecureHash"] = secure_hash(fields, SECRET)
    raw = raw_from(fields)
    adapter.verify(raw, creds())
    with pytest.raises(MalformedCallback, match="vnp_Amount"):
        adapter.parse(raw)


def test_amount_must_be_whole_dong_and_digits() -> None:
    for bad in ("800050", "8000.00", "-800000"):
        raw = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000,
                        overrides={"vnp_Amount": bad}).raw(NOW)
        with pytest.raises(MalformedCallback, match="vnp_Amount"):
            adapter.parse(raw)


def test_duplicate_query_key_refused() -> None:
    call = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000)
    raw = RawRequest(method="GET", path="/", received_at=NOW,
                     query_string=call.query_string + "&vnp_Amount=1")
    with pytest.raises(MalformedCallback, match="twice"):
        adapter.verify(raw, creds())


@pytest.mark.parametrize(("response", "status", "expected"), [
    ("00", "00", PaymentStatus.SUCCESS),
    ("24", "02", PaymentStatus.FAILED),   # customer cancelled
    ("00", "01", PaymentStatus.PENDING),  # not completed
    ("00", "04", PaymentStatus.FAILED),   # reversed
    ("07", "00", PaymentStatus.FAILED),   # both must be 00
])
def test_status_needs_both_codes(response: str, status: str, expected: PaymentStatus) -> None:
    raw = vnpay_ipn(SECRET, txn_ref=f"{CODE}-2", amount=8000, response_code=response,
                    transaction_status=status).raw(NOW)
    event = adapter.parse(raw)
    assert event.status is expected
    assert event.reference == CODE  # found in vnp_TxnRef even with a suffix


def test_cancelled_payment_with_txn_no_zero_is_keyed_by_order() -> None:
    raw = vnpay_ipn(SECRET, txn_ref=CODE, amount=8000, txn_no="0", response_code="24",
                    transaction_status="02").raw(NOW)
    assert adapter.parse(raw).provider_txn_id == f"0:{CODE}"


def _result(**kw: object) -> RecordResult:
    base = dict(event_id=1, status=PaymentStatus.SUCCESS, amount=8000, reference=CODE,
                reference_found=True, state_before=ReferenceState.ISSUED,
                state_after=ReferenceState.PAID, expected_amount=8000, applied=True)
    base.update(kw)
    return RecordResult(**base)


@pytest.mark.parametrize(("result", "code"), [
    (_result(), "00"),
    (_result(duplicate=True), "02"),
    (_result(reference_found=False, state_before=None, expected_amount=None,
             flags=(PaymentFlag.UNKNOWN_REFERENCE,)), "01"),
    (_result(amount=5000, flags=(PaymentFlag.AMOUNT_MISMATCH,)), "04"),
    (_result(state_before=ReferenceState.PAID, flags=(PaymentFlag.DUPLICATE_PAYMENT,)), "02"),
    # amount is checked before "already confirmed" (VNPAY's documented order)
    (_result(amount=1, state_before=ReferenceState.PAID), "04"),
])
def test_reply_codes_in_documented_order(result: RecordResult, code: str) -> None:
    reply = adapter.reply(result)
    assert reply.status == 200
    assert reply.text.startswith(f'{{"RspCode":"{code}"')


def test_rejected_replies() -> None:
    assert adapter.reply_rejected(SignatureError("x")).text == \
        '{"RspCode":"97","Message":"Invalid signature"}'
    assert adapter.reply_rejected(MalformedCallback("x")).text == \
        '{"RspCode":"99","Message":"Unknown error"}'
