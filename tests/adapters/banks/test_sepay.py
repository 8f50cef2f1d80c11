"""SePay webhook: API-key and HMAC modes, timestamp tolerance, in/out, parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from adapters.banks.sepay import Sepay, hmac_signature
from adapters.testing import sepay_webhook
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import Credentials, RawRequest
from feepay.reference import calc_check_digits

adapter = Sepay()
CODE = "FP7K3MQ9XA" + calc_check_digits("7K3MQ9XA")
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
APIKEY = Credentials(channel="s", secrets={"api_key": ("k-old", "k-new")})
HMAC = Credentials(channel="s", settings={"auth": "hmac"},
                   secrets={"webhook_secret": ("whsec",)})


def raw(call) -> RawRequest:  # noqa: ANN001
    return call.raw(NOW)


def test_hmac_recipe() -> None:
    assert hmac_signature("1751338800", b'{"id":1}', "whsec") == hmac.new(
        b"whsec", b'1751338800.{"id":1}', hashlib.sha256).hexdigest()


def test_api_key_mode_accepts_any_active_key() -> None:
    adapter.verify(raw(sepay_webhook(txn_id=1, amount=1, content="x", api_key="k-new")), APIKEY)
    for key in ("wrong", ""):
        with pytest.raises(SignatureError):
            adapter.verify(raw(sepay_webhook(txn_id=1, amount=1, content="x", api_key=key)),
                           APIKEY)
    with pytest.raises(SignatureError, match="Apikey"):
        adapter.verify(raw(sepay_webhook(txn_id=1, amount=1, content="x")), APIKEY)


def test_hmac_mode() -> None:
    stamp = int(NOW.timestamp())
    ok = sepay_webhook(txn_id=1, amount=1, content="x", webhook_secret="whsec", stamp=stamp)
    adapter.verify(raw(ok), HMAC)
    wrong = sepay_webhook(txn_id=1, amount=1, content="x", webhook_secret="nope", stamp=stamp)
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(raw(wrong), HMAC)
    old = sepay_webhook(txn_id=1, amount=1, content="x", webhook_secret="whsec",
                        stamp=stamp - 301)
    with pytest.raises(SignatureError, match="tolerance"):
        adapter.verify(raw(old), HMAC)
    tampered = ok.raw(NOW).model_copy(update={"body": ok.body.replace(b'"transferAmount":1',
                                                                      b'"transferAmount":9')})
    with pytest.raises(SignatureError):
        adapter.verify(tampered, HMAC)
    # the API key is not enough when the channel is in HMAC mode
    with pytest.raises(SignatureError, match="X-SePay"):
        adapter.verify(raw(sepay_webhook(txn_id=1, amount=1, content="x", api_key="k")), HMAC)


def test_parse_incoming() -> None:
    call = sepay_webhook(txn_id=92704, amount=2277000, content=f"CT DEN:0123 {CODE} NGUYEN VAN A",
                         code=CODE.lower(), when=NOW)
    event = adapter.parse(raw(call))
    assert (event.provider_txn_id, event.amount, event.reference) == ("92704", 2277000, CODE)
    assert event.paid_at == NOW and event.bank_ref == "FT00000000092704"
    assert event.memo.startswith("CT DEN") and event.account_number == "0011000000001"


def test_parse_outgoing_is_ignored_and_bad_fields() -> None:
    assert adapter.parse(raw(sepay_webhook(txn_id=1, amount=1, content="x",
                                           transfer_type="out"))) is None
    for override, field in (({"transferAmount": "12,5"}, "transferAmount"),
                            ({"transactionDate": "01/07/2025"}, "transactionDate"),
                            ({"transferType": "sideways"}, "transferType"),
                            ({"id": None}, "id")):
        with pytest.raises(MalformedCallback) as err:
            adapter.parse(raw(sepay_webhook(txn_id=1, amount=1, content="x",
                                            overrides=override)))
        assert err.value.field == field
    with pytest.raises(MalformedCallback, match="not JSON"):
        adapter.verify(RawRequest(method="POST", path="/", body=b"{oops",
                                  headers={"authorization": "Apikey k-new"}, received_at=NOW),
                       APIKEY)


def test_required_secret_depends_on_mode() -> None:
    assert adapter.required_secrets({}) == ("api_key",)
    assert adapter.required_secrets({"auth": "hmac"}) == ("webhook_secret",)
    assert json.loads(adapter.reply_rejected(SignatureError("x")).body) == {
        "success": False, "message": "x"}
