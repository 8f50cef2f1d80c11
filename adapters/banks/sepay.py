"""SePay bank-credit webhook: one POST per transaction on a linked bank account.

Body (JSON): ``id`` (SePay's transaction id — **the dedupe key**), ``gateway`` (bank),
``transactionDate`` (``YYYY-MM-DD HH:mm:ss``, Vietnam time), ``accountNumber``, ``subAccount``
(virtual account or null), ``code`` (payment code SePay extracted, or null), ``content``
(the memo), ``transferType`` (``in``/``out``), ``transferAmount``, ``accumulated``,
``referenceCode`` (bank reference), ``description`` (full bank notification).

Authentication, chosen per channel with the ``auth`` setting:

- ``apikey`` — header ``Authorization: Apikey <key>`` (secret ``api_key``);
- ``hmac`` — headers ``X-SePay-Timestamp`` (unix seconds) and ``X-SePay-Signature``
  (``sha256=<hex>``), HMAC-SHA256 with ``webhook_secret`` over ``"{timestamp}.{raw body}"``;
  stamps older than ``tolerance_seconds`` (default 300, as SePay advises) are refused.

Reply ``200 {"success": true}``; anything else makes SePay retry 7 times over ~33 minutes.
Outgoing transfers (``transferType`` ``out``) are acknowledged and ignored.

More information:
- developer.sepay.vn/vi/sepay-webhooks/tich-hop (payload, reply, dedupe)
- developer.sepay.vn/vi/sepay-webhooks/xac-thuc (API key, HMAC-SHA256)
"""

from __future__ import annotations

from datetime import datetime

from adapters.callbacks import (
    CallbackAdapter,
    Reply,
    amount_of,
    check_tolerance,
    clean_raw,
    hmac_hex,
    load_json_object,
    matches_any,
    require_fields,
    require_secrets,
    setting,
)
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentEvent, PaymentStatus, RawRequest, RecordResult
from feepay.money import VN_TZ
from feepay.reference import is_valid

DEFAULT_TOLERANCE = 300


def hmac_signature(timestamp: str, body: bytes, secret: str) -> str:
    return hmac_hex(secret, timestamp.encode("ascii") + b"." + body, "sha256")


def local_time(text: str, field: str) -> datetime:
    """``YYYY-MM-DD HH:mm:ss`` in Vietnam time → aware datetime."""
    try:
        t = text.strip()
        digits = t[:4] + t[5:7] + t[8:10] + t[11:13] + t[14:16] + t[17:]
        if (len(t) == 19 and t.isascii() and digits.isdigit()  # the usual form, by hand:
                and t[4] + t[7] + t[10] + t[13] + t[16] == "-- ::"):  # strptime is slow
            return datetime(int(t[:4]), int(t[5:7]), int(t[8:10]), int(t[11:13]),
                            int(t[14:16]), int(t[17:]), tzinfo=VN_TZ)
        return datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=VN_TZ)
    except (ValueError, AttributeError):
        raise MalformedCallback(f"{field} {text!r} is not 'YYYY-MM-DD HH:mm:ss'",
                                field=field) from None


class Sepay(CallbackAdapter):
    """SePay bank-transaction webhook."""

    name = "sepay"
    kind = "bank"
    title = "SePay (bank credit webhook)"
    methods = ("POST",)
    optional_secrets = ("api_key", "webhook_secret")
    settings_help = {"auth": "apikey (default) or hmac",
                     "tolerance_seconds": "HMAC timestamp tolerance (default 300)"}
    setting_values = {"auth": ("apikey", "hmac"), "tolerance_seconds": float}

    def required_secrets(self, settings: dict[str, object]) -> tuple[str, ...]:
        return ("webhook_secret",) if settings.get("auth") == "hmac" else ("api_key",)

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        if setting(credentials, "auth", "apikey") == "hmac":
            self._verify_hmac(request, credentials)
        else:
            self._verify_apikey(request, credentials)
        load_json_object(request.body)

    def _verify_apikey(self, request: RawRequest, credentials: Credentials) -> None:
        keys = require_secrets(credentials, "api_key")["api_key"]
        auth = request.header("authorization") or ""
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "apikey" or not key:
            raise SignatureError("missing 'Authorization: Apikey …' header")
        if not matches_any(key.strip(), keys):
            raise SignatureError("API key does not match")

    def _verify_hmac(self, request: RawRequest, credentials: Credentials) -> None:
        secrets = require_secrets(credentials, "webhook_secret")["webhook_secret"]
        stamp = (request.header("x-sepay-timestamp") or "").strip()
        given = (request.header("x-sepay-signature") or "").strip()
        if not stamp.isdigit():
            raise SignatureError("missing or invalid X-SePay-Timestamp header")
        if not given:
            raise SignatureError("missing X-SePay-Signature header")
        given = given.removeprefix("sha256=")
        if not matches_any(given, (hmac_signature(stamp, request.body, s) for s in secrets)):
            raise SignatureError("X-SePay-Signature does not match")
        check_tolerance(int(stamp), request.received_at,
                        float(setting(credentials, "tolerance_seconds", DEFAULT_TOLERANCE)))

    def parse(self, request: RawRequest) -> PaymentEvent | None:
        body = load_json_object(request.body)
        require_fields(body, "id", "transactionDate", "transferType", "transferAmount")
        if str(body["transferType"]).lower() == "out":
            return None
        if str(body["transferType"]).lower() != "in":
            raise MalformedCallback(f"transferType {body['transferType']!r} is not in/out",
                                    field="transferType")
        code = body.get("code")
        return PaymentEvent(
            provider=self.name,
            provider_txn_id=str(body["id"]),
            reference=code.upper() if isinstance(code, str) and is_valid(code) else None,
            amount=amount_of(body["transferAmount"], "transferAmount"),
            paid_at=local_time(str(body["transactionDate"]), "transactionDate"),
            status=PaymentStatus.SUCCESS,
            memo=str(body.get("content") or body.get("description") or "") or None,
            account_number=str(body.get("subAccount") or body.get("accountNumber") or "")
            or None,
            bank_ref=str(body.get("referenceCode") or "") or None,
            raw=clean_raw(body),
        )

    def reply(self, result: RecordResult) -> Reply:
        return Reply.json({"success": True})

    def reply_rejected(self, error: FeepayError) -> Reply:
        status = 401 if isinstance(error, SignatureError) else 400
        return Reply.json({"success": False, "message": error.message}, status=status)

    def reply_error(self) -> Reply:
        return Reply.json({"success": False, "message": "temporary error"}, status=503)
