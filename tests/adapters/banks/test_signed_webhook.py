"""feepay's signed bank webhook: t=,v1= header over "{t}.{body}", rotation, schema."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from adapters.banks.signed_webhook import SignedBankWebhook, signature_header
from adapters.testing import bank_webhook
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import Credentials, RawRequest

adapter = SignedBankWebhook()
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
T = int(NOW.timestamp())
CREDS = Credentials(channel="b", secrets={"webhook_secret": ("s1",)})


def test_header_recipe() -> None:
    body = b'{"id":"FT1"}'
    sig = hmac.new(b"s1", f"{T}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_header(body, "s1", T) == f"t={T},v1={sig}"


def test_valid_and_several_v1() -> None:
    call = bank_webhook(["old", "s1"], txn_id="FT1", amount=150000, memo="x", stamp=T)
    adapter.verify(call.raw(NOW), CREDS)
    event = adapter.parse(call.raw(NOW))
    assert (event.provider_txn_id, event.amount, event.payer_name) == \
        ("FT1", 150000, "NGUYEN VAN A")
    both = Credentials(channel="b", secrets={"webhook_secret": ("s1", "s2")})
    adapter.verify(bank_webhook("s2", txn_id="FT1", amount=1, memo="x", stamp=T).raw(NOW), both)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"secrets": "wrong"}, "does not match"),
    ({"stamp": T - 301}, "tolerance 300"),
    ({"stamp": T + 301}, "tolerance 300"),
])
def test_refused(kwargs: dict, message: str) -> None:
    args = {"secrets": "s1", "txn_id": "FT1", "amount": 1, "memo": "x", "stamp": T} | kwargs
    with pytest.raises(SignatureError, match=message):
        adapter.verify(bank_webhook(**args).raw(NOW), CREDS)


def test_tampered_body() -> None:
    call = bank_webhook("s1", txn_id="FT1", amount=1000, memo="x", stamp=T)
    raw = call.raw(NOW).model_copy(update={"body": call.body.replace(b"1000", b"9000")})
    with pytest.raises(SignatureError):
        adapter.verify(raw, CREDS)


def test_missing_header() -> None:
    with pytest.raises(SignatureError, match="missing Feepay-Signature"):
        adapter.verify(RawRequest(method="POST", path="/", body=b"{}", received_at=NOW), CREDS)


@pytest.mark.parametrize(("override", "field"), [
    ({"account_number": None}, "account_number"),
    ({"amount": "12,5"}, "amount"),
    ({"amount": 0}, "amount"),
    ({"booked_at": "2025-07-01T10:15:00"}, "booked_at"),   # no offset: ambiguous by 7 h
    ({"currency": "USD"}, "currency"),
    ({"id": ""}, "id"),
])
def test_schema_errors(override: dict, field: str) -> None:
    call = bank_webhook("s1", txn_id="FT1", amount=1000, memo="x", stamp=T, overrides=override)
    with pytest.raises(MalformedCallback) as err:
        adapter.parse(call.raw(NOW))
    assert err.value.field == field


def test_not_json_and_debit() -> None:
    call = bank_webhook("s1", txn_id="FT1", amount=1, memo="x", stamp=T, raw_body=b"hello")
    adapter.verify(call.raw(NOW), CREDS)  # the signature covers the raw bytes
    with pytest.raises(MalformedCallback, match="not JSON"):
        adapter.parse(call.raw(NOW))
    debit = bank_webhook("s1", txn_id="FT2", amount=1, memo="x", direction="debit")
    assert adapter.parse(debit.raw(NOW)) is None
    assert adapter.parse(bank_webhook("s1", txn_id="FT3", amount="150.000",
                                      memo="x").raw(NOW)).amount == 150000
