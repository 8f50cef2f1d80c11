"""ZaloPay (v2) callback — and a poller, because ZaloPay only calls back on success.

Callback: POST JSON ``{"data": "<JSON string>", "mac": "<hex>", "type": 1}``.
``mac`` = HMAC-SHA256(**key2**, the raw ``data`` string), verified over the string exactly
as received (never re-serialised). ``data`` holds ``app_id``, ``app_trans_id`` (our order
field, ``yymmdd_…`` in GMT+7), ``app_time``, ``app_user``, ``amount`` (plain VND),
``embed_data``, ``item``, ``zp_trans_id`` (ZaloPay's id), ``server_time`` (ms),
``channel``, ``merchant_user_id``, ``user_fee_amount``, ``discount_amount``.

Reply JSON ``{"return_code", "return_message"}``: 1 processed; 2 already processed
(duplicate ``zp_trans_id``); -1 MAC mismatch; 0 an error on our side (ZaloPay calls back
again, at most 3 times).

Poller: callbacks can be lost, so open orders are queried at ``/v2/query`` with
``mac = HMAC-SHA256(key1, "app_id|app_trans_id|key1")``; ``return_code`` 1 paid, 2 failed,
3 not yet paid / processing. A paid answer becomes the same :class:`PaymentEvent` a
callback would have produced (same ``zp_trans_id``), so whichever arrives second is a
duplicate.

More information:
- docs.zalopay.vn/v2/general/overview.html (callback, MAC)
- docs.zalopay.vn/v2/payment-gateway/api-query-order.html (query)
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable
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

QUERY_URL = "https://openapi.zalopay.vn/v2/query"
SANDBOX_QUERY_URL = "https://sb-openapi.zalopay.vn/v2/query"


def callback_mac(data: str, key2: str) -> str:
    return hmac_hex(key2, data, "sha256")


def query_mac(app_id: str, app_trans_id: str, key1: str) -> str:
    return hmac_hex(key1, f"{app_id}|{app_trans_id}|{key1}", "sha256")


def _envelope(request: RawRequest) -> dict[str, Any]:
    body = load_json_object(request.body)
    if not isinstance(body.get("data"), str):
        raise MalformedCallback("field data must be a JSON string", field="data")
    return body


def _data(body: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(body["data"])
    except ValueError:
        raise MalformedCallback("data is not JSON", field="data") from None
    if not isinstance(data, dict):
        raise MalformedCallback("data is not a JSON object", field="data")
    return data


def event_from_order(data: dict[str, Any], *, provider: str = "zalopay") -> PaymentEvent:
    """A success event from callback ``data`` (or a paid query answer shaped like it)."""
    require_fields(data, "app_trans_id", "zp_trans_id", "amount", "server_time")
    try:
        stamp = int(data["server_time"])
    except (TypeError, ValueError):
        raise MalformedCallback("server_time must be epoch milliseconds",
                                field="server_time") from None
    order = str(data["app_trans_id"])
    codes = find_in_text(order)
    return PaymentEvent(
        provider=provider,
        provider_txn_id=str(data["zp_trans_id"]),
        reference=codes[0] if len(codes) == 1 else None,
        order_id=order,
        amount=amount_of(data["amount"], "amount"),
        paid_at=datetime.fromtimestamp(stamp / 1000, UTC),
        status=PaymentStatus.SUCCESS,
        memo=str(data.get("description") or "") or None,
        payer_name=str(data.get("app_user") or "") or None,
        raw=dict(data),
    )


class Zalopay(CallbackAdapter):
    """ZaloPay order callback."""

    name = "zalopay"
    kind = "gateway"
    title = "ZaloPay (v2 callback + order-status poller)"
    methods = ("POST",)
    secret_names = ("key2",)
    optional_secrets = ("key1",)
    settings_help = {"query_url": f"order-status API (default {QUERY_URL})"}
    setting_values = {"query_url": str}

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        body = _envelope(request)
        keys = require_secrets(credentials, "key2")["key2"]
        given = body.get("mac")
        if not isinstance(given, str) or not given:
            raise SignatureError("missing mac")
        if not matches_any(given, (callback_mac(body["data"], k) for k in keys)):
            raise SignatureError("mac does not match")
        if credentials.merchant_id:
            app_id = str(_data(body).get("app_id", ""))
            if app_id != credentials.merchant_id:
                raise SignatureError(f"app_id {app_id!r} is not this channel's app")

    def parse(self, request: RawRequest) -> PaymentEvent:
        return event_from_order(_data(_envelope(request)), provider=self.name)

    def reply(self, result: RecordResult) -> Reply:
        if result.duplicate:
            return Reply.json({"return_code": 2, "return_message": "already processed"})
        return Reply.json({"return_code": 1, "return_message": "success"})

    def reply_ignored(self) -> Reply:
        return Reply.json({"return_code": 1, "return_message": "success"})

    def reply_rejected(self, error: FeepayError) -> Reply:
        msg = "mac not equal" if isinstance(error, SignatureError) else error.message
        return Reply.json({"return_code": -1, "return_message": msg})

    def reply_error(self) -> Reply:
        return Reply.json({"return_code": 0, "return_message": "temporary error, retry"})


# --- poller --------------------------------------------------------------------------------

Transport = Callable[[str, dict[str, str]], dict[str, Any]]


def http_post_form(url: str, form: dict[str, str], timeout: float = 10.0) -> dict[str, Any]:
    """POST a form and decode the JSON answer (the default poller transport)."""
    data = urllib.parse.urlencode(form).encode("ascii")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured URL
        return json.loads(resp.read().decode("utf-8"))


class PollAnswer:
    """One order-status answer: paid (with its event), failed, or still open."""

    PAID, FAILED, OPEN = "paid", "failed", "open"

    def __init__(self, state: str, answer: dict[str, Any], event: PaymentEvent | None = None):
        self.state = state
        self.answer = answer
        self.event = event


class ZalopayPoller:
    """Queries ZaloPay for an order's status (``app_id`` + ``key1`` of the channel)."""

    def __init__(self, app_id: str, key1: str, *, url: str = QUERY_URL,
                 transport: Transport = http_post_form) -> None:
        self.app_id = str(app_id)
        self.key1 = key1
        self.url = url
        self.transport = transport

    def query(self, app_trans_id: str, *, now: datetime) -> PollAnswer:
        form = {"app_id": self.app_id, "app_trans_id": app_trans_id,
                "mac": query_mac(self.app_id, app_trans_id, self.key1)}
        answer = self.transport(self.url, form)
        code = int(answer.get("return_code", 0))
        if code == 1 and not answer.get("is_processing"):
            data = {"app_id": self.app_id, "app_trans_id": app_trans_id,
                    "zp_trans_id": answer.get("zp_trans_id"),
                    "amount": answer.get("amount"),
                    "server_time": answer.get("server_time") or int(now.timestamp() * 1000)}
            return PollAnswer(PollAnswer.PAID, answer, event_from_order(data))
        if code == 2:
            return PollAnswer(PollAnswer.FAILED, clean_raw(answer))
        return PollAnswer(PollAnswer.OPEN, answer)
