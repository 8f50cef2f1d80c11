"""feepay's own signed bank webhook, for banks that push credits to us directly.

One POST per credit to ``/callbacks/bankhook/<channel>`` with ``Content-Type:
application/json`` and the body described by :class:`BankCredit` (docs/adapters.md has the
schema and an example)::

    {"id": "FT25182000123456", "account_number": "1234567890", "amount": 150000,
     "direction": "credit", "booked_at": "2025-07-01T10:15:00+07:00",
     "memo": "FP7K3MQ9XA4C NGUYEN VAN A", "bank_ref": "FT25182000123456",
     "payer_name": "NGUYEN VAN A", "payer_account": "0011223344", "currency": "VND"}

Header ``Feepay-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]``: HMAC-SHA256 with the
channel's ``webhook_secret`` over ``"{t}.{raw body bytes}"`` (the Stripe scheme). Any one
``v1`` may match (the bank signs with old and new secret while rotating); the stamp must be
within ``tolerance_seconds`` (default 300) of reception. ``id`` is the idempotency key: a
bank retries with the same ``id`` until it gets a 2xx.

Replies: ``200 {"ok": true, "event_id", "duplicate", "reference", "flags"}``;
``401 {"ok": false, "error"}`` for a bad signature; ``400`` for an unreadable body.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from adapters.callbacks import (
    CallbackAdapter,
    Reply,
    amount_of,
    check_tolerance,
    hmac_hex,
    load_json_object,
    matches_any,
    parse_stamp_header,
    refused_field,
    require_secrets,
    setting,
)
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentEvent, PaymentStatus, RawRequest, RecordResult

HEADER = "Feepay-Signature"
DEFAULT_TOLERANCE = 300


class BankCredit(BaseModel):
    """The JSON body of a signed bank webhook (unknown extra fields are kept, not refused).

    Attributes:
        id: the bank's unique transaction id (idempotency key), 1–100 characters.
        account_number: the credited account (ours).
        amount: whole đồng, a JSON integer or a digit string ("150000", "150.000").
        direction: ``credit`` (a payment in) or ``debit`` (acknowledged, ignored).
        booked_at: ISO 8601 with an offset (``2025-07-01T10:15:00+07:00``).
        memo: the transfer memo as the bank has it (our reference is searched in it).
        bank_ref, payer_name, payer_account: optional evidence.
        currency: ``VND`` only.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=100)
    account_number: str = Field(min_length=1, max_length=40)
    amount: int | str
    direction: Literal["credit", "debit"] = "credit"
    booked_at: AwareDatetime
    memo: str = ""
    bank_ref: str | None = None
    payer_name: str | None = None
    payer_account: str | None = None
    currency: Literal["VND"] = "VND"


def signature(stamp: str, body: bytes, secret: str) -> str:
    return hmac_hex(secret, stamp.encode("ascii") + b"." + body, "sha256")


def signature_header(body: bytes, secrets: list[str] | str, stamp: int) -> str:
    """A ``Feepay-Signature`` header value (banks and our tests build it this way)."""
    values = [secrets] if isinstance(secrets, str) else secrets
    return ",".join([f"t={stamp}"] + [f"v1={signature(str(stamp), body, s)}" for s in values])


class SignedBankWebhook(CallbackAdapter):
    """feepay's documented, signed bank-credit webhook."""

    name = "bankhook"
    kind = "bank"
    title = "Signed bank webhook (feepay schema)"
    methods = ("POST",)
    secret_names = ("webhook_secret",)
    settings_help = {"tolerance_seconds": "signature timestamp tolerance (default 300)"}
    setting_values = {"tolerance_seconds": float}

    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        secrets = require_secrets(credentials, "webhook_secret")["webhook_secret"]
        stamp, sigs = parse_stamp_header(request.header(HEADER), HEADER)
        expected = [signature(stamp, request.body, s) for s in secrets]
        if not any(matches_any(s, expected) for s in sigs):
            raise SignatureError(f"{HEADER} does not match")
        check_tolerance(int(stamp), request.received_at,
                        float(setting(credentials, "tolerance_seconds", DEFAULT_TOLERANCE)))

    def parse(self, request: RawRequest) -> PaymentEvent | None:
        data = load_json_object(request.body)
        try:
            credit = BankCredit.model_validate(data)
        except PydanticError as exc:
            where, why = refused_field(exc)
            raise MalformedCallback(why, field=where) from None
        if credit.direction == "debit":
            return None
        amount = amount_of(credit.amount, "amount")
        if amount <= 0:
            raise MalformedCallback("amount must be positive", field="amount")
        return PaymentEvent(
            provider=self.name,
            provider_txn_id=credit.id,
            amount=amount,
            paid_at=credit.booked_at,
            status=PaymentStatus.SUCCESS,
            memo=credit.memo or None,
            payer_name=credit.payer_name,
            payer_account=credit.payer_account,
            account_number=credit.account_number,
            bank_ref=credit.bank_ref,
            raw=data,
        )

    def reply(self, result: RecordResult) -> Reply:
        return Reply.json({"ok": True, "event_id": result.event_id,
                           "duplicate": result.duplicate, "reference": result.reference,
                           "flags": [str(f) for f in result.flags]})

    def reply_ignored(self) -> Reply:
        return Reply.json({"ok": True, "ignored": True})

    def reply_rejected(self, error: FeepayError) -> Reply:
        status = 401 if isinstance(error, SignatureError) else 400
        return Reply.json({"ok": False, "error": str(error)}, status=status)

    def reply_error(self) -> Reply:
        return Reply.json({"ok": False, "error": "temporary error, retry"}, status=503)
