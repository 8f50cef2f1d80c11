"""MoMo IPN (All-In-One v2): HMAC-SHA256 over the documented field order, reply HTTP 204.

MoMo POSTs JSON to the ``ipnUrl`` given when the payment was created: ``partnerCode``,
``orderId`` (our order field), ``requestId``, ``amount`` (plain VND), ``orderInfo``,
``orderType``, ``transId`` (MoMo's id), ``resultCode``, ``message``, ``payType``,
``responseTime`` (epoch ms), ``extraData`` (base64 JSON) and ``signature``.

Signature: HMAC-SHA256 with our **secretKey**, hex, over::

    accessKey=…&amount=…&extraData=…&message=…&orderId=…&orderInfo=…&orderType=…
    &partnerCode=…&payType=…&requestId=…&responseTime=…&resultCode=…&transId=…

where ``accessKey`` is **ours** (from the channel, not the body) and the other values are
the body's, as sent. ``resultCode`` 0 is success; 9000 (authorised), 1000, 7000, 7002 and
8000 are pending; anything else failed. MoMo expects ``204 No Content`` within 15 s.

More information:
- developers.momo.vn/v3/docs/payment/api/result-handling/notification/
- developers.momo.vn/v3/docs/payment/api/result-handling/resultcode/
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.callbacks import (
    CallbackAdapter,
    Reply,
    amount_of,
    clean_raw,
    hmac_hex,
    load_json_object,
    matches_any,
    require_fields,
    require_secrets,
)
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentEvent, PaymentStatus, RawRequest, RecordResult
from feepay.reference import find_in_text

SIGNED_FIELDS = ("amount", "extraData", "message", "orderId", "orderInfo", "orderType",
                 "partnerCode", "payType", "requestId", "responseTime", "resultCode",
                 "transId")
PENDING_CODES = {9000, 1000, 7000, 7002, 8000}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def raw_signature(body: dict[str, Any], access_key: str) -> str:
    """The string MoMo signs for an IPN."""
    return "&".join([f"accessKey={access_key}"]
                    + [f"{name}={_text(body.get(name))}" for name in SIGNED_FIELDS])


def signature(body: dict[str, Any], access_key: str, secret_key: str) -> str:
    return hmac_hex(secret_key, raw_signature(body, access_key), "sha256")


class Momo(CallbackAdapter):
    """MoMo wallet IPN."""

    name = "momo"
    kind = "gateway"
    title = "MoMo (AIO v2 IPN)"
    methods = ("POST",)
    secret_names = ("access_key", "secret_key")

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        body = load_json_object(request.body)
        s = require_secrets(credentials, "access_key", "secret_key")
        given = body.get("signature")
        if not isinstance(given, str) or not given:
            raise SignatureError("missing signature")
        expected = (signature(body, a, k) for a in s["access_key"] for k in s["secret_key"])
        if not matches_any(given, expected):
            raise SignatureError("signature does not match")
        if credentials.merchant_id and body.get("partnerCode") != credentials.merchant_id:
            raise SignatureError(f"partnerCode {body.get('partnerCode')!r} is not this "
                                 "channel's partner")

    def parse(self, request: RawRequest) -> PaymentEvent:
        body = load_json_object(request.body)
        require_fields(body, "orderId", "amount", "transId", "resultCode", "responseTime")
        try:
            result_code = int(body["resultCode"])
            stamp = int(body["responseTime"])
        except (TypeError, ValueError):
            raise MalformedCallback("resultCode and responseTime must be integers",
                                    field="resultCode") from None
        status = (PaymentStatus.SUCCESS if result_code == 0 else
                  PaymentStatus.PENDING if result_code in PENDING_CODES else
                  PaymentStatus.FAILED)
        codes = find_in_text(str(body["orderId"]))
        return PaymentEvent(
            provider=self.name,
            provider_txn_id=str(body["transId"]),
            reference=codes[0] if len(codes) == 1 else None,
            order_id=str(body["orderId"]),
            amount=amount_of(body["amount"], "amount"),
            paid_at=datetime.fromtimestamp(stamp / 1000, UTC),
            status=status,
            memo=_text(body.get("orderInfo")) or None,
            raw=clean_raw(body, "signature"),
        )

    def reply(self, result: RecordResult) -> Reply:
        return Reply(204, b"", "text/plain")

    def reply_ignored(self) -> Reply:
        return Reply(204, b"", "text/plain")

    def reply_rejected(self, error: FeepayError) -> Reply:
        status = 401 if isinstance(error, SignatureError) else 400
        return Reply.json({"resultCode": 97 if status == 401 else 99,
                           "message": error.message}, status=status)

    def reply_error(self) -> Reply:
        return Reply.json({"resultCode": 99, "message": "temporary error"}, status=503)
