"""VNPAY IPN (API 2.1.0): HMAC-SHA512 over the sorted, URL-encoded ``vnp_*`` fields.

The IPN arrives as an HTTP GET whose query string holds ``vnp_TxnRef`` (our order field),
``vnp_Amount`` (VND × 100), ``vnp_ResponseCode``, ``vnp_TransactionStatus``,
``vnp_TransactionNo`` (VNPAY's id), ``vnp_PayDate`` (``yyyyMMddHHmmss``, GMT+7),
``vnp_BankCode``, ``vnp_BankTranNo``, ``vnp_OrderInfo``, ``vnp_TmnCode`` and
``vnp_SecureHash``.

Signature: every ``vnp_*`` field except ``vnp_SecureHash``/``vnp_SecureHashType``, sorted by
name, joined as ``key=value`` with ``&`` after URL-encoding both the way PHP's
``urlencode`` does (space → ``+``; everything but ``A–Z a–z 0–9 - _ .`` percent-encoded),
then HMAC-SHA512 with the terminal's HashSecret, hex.

A payment succeeded only when ``vnp_ResponseCode`` **and** ``vnp_TransactionStatus`` are
both ``00``. The reply is JSON ``{"RspCode": .., "Message": ..}`` in VNPAY's order of
checks: checksum (97) → order exists (01) → amount (04) → not yet confirmed (02) →
update → 00; 99 for anything else. ``00`` and ``02`` end VNPAY's retries. Replying 04
does not undo the charge at VNPAY, so the money is still recorded (flagged).

More information:
- sandbox.vnpayment.vn/apis/docs/thanh-toan-pay/pay.html (IPN, reply codes)
- VNPAY's PHP sample ``vnpay_ipn.php`` (signature recipe)
- vnpay npm library tests (published vectors, see tests/adapters/gateways/test_vnpay.py)
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from urllib.parse import parse_qsl, quote_plus

from adapters.callbacks import (
    CallbackAdapter,
    Reply,
    amount_of,
    clean_raw,
    hmac_hex,
    matches_any,
    require_fields,
    require_secrets,
)
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError
from feepay.models import (
    Credentials,
    PaymentEvent,
    PaymentStatus,
    RawRequest,
    RecordResult,
)
from feepay.money import VN_TZ
from feepay.reference import find_in_text

HASH_FIELDS_EXCLUDED = ("vnp_SecureHash", "vnp_SecureHashType")

RSP_MESSAGES = {
    "00": "Confirm Success",
    "01": "Order not found",
    "02": "Order already confirmed",
    "04": "Invalid amount",
    "97": "Invalid signature",
    "99": "Unknown error",
}


def php_urlencode(value: str) -> str:
    """PHP ``urlencode``: like ``quote_plus`` but ``~`` is encoded too."""
    return quote_plus(value, safe="").replace("~", "%7E")


def hash_data(fields: dict[str, str]) -> str:
    """The string VNPAY signs: sorted ``vnp_*`` fields, PHP-urlencoded, joined with ``&``."""
    items = sorted((k, v) for k, v in fields.items()
                   if k.startswith("vnp_") and k not in HASH_FIELDS_EXCLUDED)
    return "&".join(f"{php_urlencode(k)}={php_urlencode(v)}" for k, v in items)


def secure_hash(fields: dict[str, str], hash_secret: str) -> str:
    """``vnp_SecureHash`` for these fields (HMAC-SHA512, lower-case hex)."""
    return hmac_hex(hash_secret, hash_data(fields), "sha512")


def read_fields(request: RawRequest) -> dict[str, str]:
    """The IPN fields: from the query string (GET) or a form body; repeated keys refused."""
    source = request.query_string
    if not source and request.method == "POST":
        source = request.body.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for key, value in parse_qsl(source, keep_blank_values=True):
        if key in fields:
            raise MalformedCallback(f"field {key} appears twice", field=key)
        fields[key] = value
    return fields


class Vnpay(CallbackAdapter):
    """VNPAY payment gateway IPN."""

    name = "vnpay"
    kind = "gateway"
    title = "VNPAY (IPN 2.1.0)"
    methods = ("GET", "POST")
    secret_names = ("hash_secret",)
    settings_help: ClassVar[dict[str, str]] = {}

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        fields = read_fields(request)
        secrets = require_secrets(credentials, "hash_secret")["hash_secret"]
        given = fields.get("vnp_SecureHash")
        if not given:
            raise SignatureError("missing vnp_SecureHash")
        if not matches_any(given, (secure_hash(fields, s) for s in secrets)):
            raise SignatureError("vnp_SecureHash does not match")
        tmn = fields.get("vnp_TmnCode")
        if credentials.merchant_id and tmn != credentials.merchant_id:
            raise SignatureError(f"vnp_TmnCode {tmn!r} is not this channel's terminal")

    def parse(self, request: RawRequest) -> PaymentEvent:
        f = read_fields(request)
        require_fields(f, "vnp_TxnRef", "vnp_Amount", "vnp_ResponseCode",
                       "vnp_TransactionStatus", "vnp_PayDate")
        raw_amount = f["vnp_Amount"]
        if not raw_amount.isdigit():
            raise MalformedCallback(f"vnp_Amount {raw_amount!r} is not a number",
                                    field="vnp_Amount")
        amount, cents = divmod(amount_of(raw_amount, "vnp_Amount"), 100)
        if cents:
            raise MalformedCallback(f"vnp_Amount {raw_amount} is not a whole number of đồng "
                                    "(VNPAY sends VND × 100)", field="vnp_Amount")
        ok = f["vnp_ResponseCode"] == "00" and f["vnp_TransactionStatus"] == "00"
        status = (PaymentStatus.SUCCESS if ok else
                  PaymentStatus.PENDING if f["vnp_TransactionStatus"] == "01" and
                  f["vnp_ResponseCode"] == "00" else PaymentStatus.FAILED)
        txn_no = f.get("vnp_TransactionNo", "")
        if not txn_no or txn_no.strip("0") == "":
            # cancelled payments carry TransactionNo 0: key them by our order instead
            txn_no = f"0:{f['vnp_TxnRef']}"
        codes = find_in_text(f["vnp_TxnRef"])
        return PaymentEvent(
            provider=self.name,
            provider_txn_id=txn_no,
            reference=codes[0] if len(codes) == 1 else None,
            order_id=f["vnp_TxnRef"],
            amount=amount,
            paid_at=_pay_date(f["vnp_PayDate"]),
            status=status,
            memo=f.get("vnp_OrderInfo") or None,
            payer_name=None,
            bank_ref=f.get("vnp_BankTranNo") or None,
            raw=clean_raw(f, *HASH_FIELDS_EXCLUDED),
        )

    def reply(self, result: RecordResult) -> Reply:
        if result.duplicate:
            code = "02"
        elif not result.reference_found:
            code = "01"
        elif result.expected_amount is not None and result.amount != result.expected_amount:
            code = "04"
        elif result.already_final:
            code = "02"
        else:
            code = "00"
        return _rsp(code)

    def reply_rejected(self, error: FeepayError) -> Reply:
        return _rsp("97" if isinstance(error, SignatureError) else "99")

    def reply_ignored(self) -> Reply:
        return _rsp("00")

    def reply_error(self) -> Reply:
        return _rsp("99")


def _rsp(code: str) -> Reply:
    return Reply.json({"RspCode": code, "Message": RSP_MESSAGES[code]})


def _pay_date(text: str) -> datetime:
    try:
        if len(text) == 14 and text.isascii() and text.isdigit():  # the usual form, by
            return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]),  # hand: strptime
                            int(text[8:10]), int(text[10:12]), int(text[12:]),  # is slow
                            tzinfo=VN_TZ)
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ)
    except ValueError:
        raise MalformedCallback(f"vnp_PayDate {text!r} is not yyyyMMddHHmmss",
                                field="vnp_PayDate") from None
