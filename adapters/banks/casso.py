"""Casso Webhook V2: bank transactions pushed by Casso, signed with HMAC-SHA512.

Body: ``{"error": 0, "data": {"id", "reference", "description", "amount",
"runningBalance", "transactionDateTime", "accountNumber", "bankName", "bankAbbreviation",
"virtualAccountNumber", "virtualAccountName", "counterAccountName", "counterAccountNumber",
"counterAccountBankId", "counterAccountBankName"}}``.

Header ``X-Casso-Signature: t=<epoch ms>,v1=<hex>``. To verify: sort the keys of the
**whole body** recursively (A→Z), serialise it as compact JSON (``,`` and ``:`` without
spaces), sign ``"{t}.{json}"`` with HMAC-SHA512 under the channel's ``checksum_key``, hex.
(Casso's own published example signs the whole body, not only ``data``; it is our test
vector.) Non-ASCII text is tried both as raw UTF-8 (JavaScript ``JSON.stringify``) and as
``\\uXXXX`` escapes (Python ``json.dumps`` defaults), since the recipe does not say.

Timestamps further than ``tolerance_seconds`` (default 300) from reception are refused.
Debits (negative ``amount``) are acknowledged and ignored. Reply ``200 {"success": true}``.

More information:
- github.com/CassoHQ/casso-webhook-v2-verify-signature (README, python.py)
"""

from __future__ import annotations

import json
from typing import Any

from adapters.banks.sepay import local_time
from adapters.callbacks import (
    CallbackAdapter,
    Reply,
    amount_of,
    check_tolerance,
    hmac_hex,
    load_json_object,
    matches_any,
    parse_stamp_header,
    require_fields,
    require_secrets,
    setting,
)
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentEvent, PaymentStatus, RawRequest, RecordResult

HEADER = "X-Casso-Signature"
DEFAULT_TOLERANCE = 300


def sort_keys(value: Any) -> Any:
    """Sort object keys recursively (A→Z), as Casso does before signing."""
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    return value


def canonical_json(body: dict[str, Any], *, ascii_only: bool = False) -> str:
    return json.dumps(sort_keys(body), separators=(",", ":"), ensure_ascii=ascii_only)


def signature(body: dict[str, Any], stamp: str, key: str, *, ascii_only: bool = False) -> str:
    return hmac_hex(key, f"{stamp}.{canonical_json(body, ascii_only=ascii_only)}", "sha512")


class Casso(CallbackAdapter):
    """Casso webhook V2."""

    name = "casso"
    kind = "bank"
    title = "Casso (webhook V2)"
    methods = ("POST",)
    secret_names = ("checksum_key",)
    settings_help = {"tolerance_seconds": "signature timestamp tolerance (default 300)"}
    setting_values = {"tolerance_seconds": float}

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        keys = require_secrets(credentials, "checksum_key")["checksum_key"]
        stamp, sigs = parse_stamp_header(request.header(HEADER), HEADER)
        body = load_json_object(request.body)
        variants = [False, True] if not request.body.isascii() else [False]
        expected = [signature(body, stamp, k, ascii_only=a) for k in keys for a in variants]
        if not any(matches_any(s, expected) for s in sigs):
            raise SignatureError(f"{HEADER} does not match")
        check_tolerance(int(stamp) / 1000, request.received_at,
                        float(setting(credentials, "tolerance_seconds", DEFAULT_TOLERANCE)))

    def parse(self, request: RawRequest) -> PaymentEvent | None:
        body = load_json_object(request.body)
        data = body.get("data")
        if not isinstance(data, dict):
            raise MalformedCallback("data must be an object", field="data")
        require_fields(data, "amount", "transactionDateTime")
        if data.get("id") is None:
            raise MalformedCallback("missing field(s): id", field="id")
        amount = amount_of(data["amount"], "amount")
        if amount <= 0:
            return None
        return PaymentEvent(
            provider=self.name,
            provider_txn_id=str(data["id"]),
            amount=amount,
            paid_at=local_time(str(data["transactionDateTime"]), "transactionDateTime"),
            status=PaymentStatus.SUCCESS,
            memo=str(data.get("description") or "") or None,
            payer_name=str(data.get("counterAccountName") or "") or None,
            payer_account=str(data.get("counterAccountNumber") or "") or None,
            account_number=str(data.get("virtualAccountNumber") or data.get("accountNumber")
                               or "") or None,
            bank_ref=str(data.get("reference") or "") or None,
            raw=dict(data),
        )

    def reply(self, result: RecordResult) -> Reply:
        return Reply.json({"success": True})

    def reply_rejected(self, error: FeepayError) -> Reply:
        status = 401 if isinstance(error, SignatureError) else 400
        return Reply.json({"success": False, "message": error.message}, status=status)

    def reply_error(self) -> Reply:
        return Reply.json({"success": False, "message": "temporary error"}, status=503)
