"""ZaloPay callback adapter (MAC over the raw data string) and the order-status poller."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from adapters.gateways.zalopay import PollAnswer, Zalopay, ZalopayPoller, callback_mac, query_mac
from adapters.testing import zalopay_callback
from feepay.exceptions import MalformedCallback, SignatureError
from feepay.models import Credentials, PaymentStatus, RawRequest, RecordResult
from feepay.reference import calc_check_digits

KEY1, KEY2 = "sandbox-key1", "sandbox-key2"
CODE = "FP7K3MQ9XA" + calc_check_digits("7K3MQ9XA")
ORDER = f"250701_{CODE}"
NOW = datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
adapter = Zalopay()
CREDS = Credentials(channel="zp", merchant_id="2553", secrets={"key2": (KEY2,)})


def raw(body: bytes) -> RawRequest:
    return RawRequest(method="POST", path="/callbacks/zalopay/zp", body=body, received_at=NOW)


def test_mac_is_hmac_sha256_key2_over_raw_data() -> None:
    data = '{"app_id":2553,"amount":8000}'
    assert callback_mac(data, KEY2) == hmac.new(KEY2.encode(), data.encode(),
                                                hashlib.sha256).hexdigest()
    assert query_mac("2553", ORDER, KEY1) == hmac.new(
        KEY1.encode(), f"2553|{ORDER}|{KEY1}".encode(), hashlib.sha256).hexdigest()


def test_valid_callback() -> None:
    r = raw(zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000, zp_trans_id=99,
                             server_time=NOW).body)
    adapter.verify(r, CREDS)
    event = adapter.parse(r)
    assert (event.reference, event.order_id, event.provider_txn_id) == (CODE, ORDER, "99")
    assert event.amount == 8000 and event.status is PaymentStatus.SUCCESS
    assert event.paid_at == NOW


def test_mac_checked_on_raw_string_not_reserialised() -> None:
    """Same JSON meaning, different bytes (spaces): the MAC no longer matches."""
    call = zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000)
    body = json.loads(call.body)
    body["data"] = json.dumps(json.loads(body["data"]), separators=(", ", ": "))
    with pytest.raises(SignatureError, match="mac"):
        adapter.verify(raw(json.dumps(body).encode()), CREDS)


@pytest.mark.parametrize(("call", "error", "message"), [
    (zalopay_callback("wrong", app_trans_id=ORDER, amount=8000), SignatureError, "mac"),
    (zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000,
                      data_overrides={"amount": 1}), SignatureError, "mac"),
    (zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000, overrides={"mac": ""}),
     SignatureError, "missing mac"),
    (zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000, app_id=9999), SignatureError,
     "app_id"),
    (zalopay_callback(KEY2, app_trans_id=ORDER, amount=8000, overrides={"data": 5}),
     MalformedCallback, "data"),
])
def test_refused(call, error: type, message: str) -> None:  # noqa: ANN001
    with pytest.raises(error, match=message):
        adapter.verify(raw(call.body), CREDS)


def test_not_json() -> None:
    with pytest.raises(MalformedCallback, match="not JSON"):
        adapter.verify(raw(b"<xml/>"), CREDS)


def test_replies() -> None:
    res = RecordResult(event_id=1, status=PaymentStatus.SUCCESS, amount=1)
    assert json.loads(adapter.reply(res).body) == {"return_code": 1,
                                                   "return_message": "success"}
    dup = res.model_copy(update={"duplicate": True})
    assert json.loads(adapter.reply(dup).body)["return_code"] == 2
    assert json.loads(adapter.reply_rejected(SignatureError()).body) == {
        "return_code": -1, "return_message": "mac not equal"}
    assert json.loads(adapter.reply_error().body)["return_code"] == 0


# --- poller against a real HTTP server on 127.0.0.1 -------------------------------------------

class FakeZaloPay(BaseHTTPRequestHandler):
    answers: dict[str, dict] = {}
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(
            int(self.headers["Content-Length"])).decode()).items()}
        self.seen.append(form)
        ok = form["mac"] == query_mac(form["app_id"], form["app_trans_id"], KEY1)
        answer = (self.answers.get(form["app_trans_id"], {"return_code": 3})
                  if ok else {"return_code": 2, "return_message": "mac invalid"})
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_zalopay() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeZaloPay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeZaloPay.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/query"
    server.shutdown()
    server.server_close()


def test_poller_states(fake_zalopay: str) -> None:
    FakeZaloPay.answers = {
        ORDER: {"return_code": 1, "is_processing": False, "amount": 8000, "zp_trans_id": 77,
                "server_time": 1751338800000},
        "250701_failed": {"return_code": 2, "return_message": "Giao dịch thất bại"},
        "250701_busy": {"return_code": 1, "is_processing": True},
    }
    poller = ZalopayPoller("2553", KEY1, url=fake_zalopay)
    paid = poller.query(ORDER, now=NOW)
    assert paid.state == PollAnswer.PAID
    assert (paid.event.provider_txn_id, paid.event.amount, paid.event.reference) == \
        ("77", 8000, CODE)
    assert poller.query("250701_failed", now=NOW).state == PollAnswer.FAILED
    assert poller.query("250701_busy", now=NOW).state == PollAnswer.OPEN
    assert poller.query("250701_unknown", now=NOW).state == PollAnswer.OPEN
    assert FakeZaloPay.seen[0]["mac"] == query_mac("2553", ORDER, KEY1)
