"""Signed test callbacks for every built-in adapter (tests, benchmarks, local simulation).

Each builder returns a :class:`SignedCall` — method, query string, headers and body bytes
exactly as the provider would send them, signed with the given secret — that can be
turned into a :class:`~feepay.models.RawRequest`, sent through Flask's test client, or
sent over HTTP. Keyword ``overrides`` replace fields *after* signing, which is how tests
tamper with a signed callback.

The recipes here are feepay's own; the adapter tests also pin them to published vectors
(VNPAY via the vnpay npm library's tests, Casso via its published example).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from adapters.banks import casso, sepay, signed_webhook
from adapters.gateways import momo, vnpay, zalopay
from feepay.models import RawRequest
from feepay.money import VN_TZ, now_utc


@dataclass(frozen=True)
class SignedCall:
    method: str
    body: bytes = b""
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def raw(self, received_at: datetime | None = None, path: str = "/callbacks/x/y",
            remote_addr: str = "127.0.0.1") -> RawRequest:
        return RawRequest(method=self.method, path=path, query_string=self.query_string,
                          headers={k.lower(): v for k, v in self.headers.items()},
                          body=self.body, remote_addr=remote_addr,
                          received_at=received_at or now_utc())

    def url(self, base: str) -> str:
        return f"{base}?{self.query_string}" if self.query_string else base


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def vnpay_ipn(hash_secret: str, *, txn_ref: str, amount: int, txn_no: str = "14422574",
              response_code: str = "00", transaction_status: str = "00",
              tmn_code: str = "FEEPAY01", pay_date: datetime | None = None,
              order_info: str = "Thanh toan le phi ho so", overrides: dict | None = None,
              drop: tuple[str, ...] = (), unsigned: tuple[str, ...] = ()) -> SignedCall:
    """A VNPAY IPN (GET) for ``amount`` VND (sent ×100); ``unsigned`` fields are removed
    before signing, ``drop`` after."""
    when = (pay_date or now_utc()).astimezone(VN_TZ)
    fields = {"vnp_Amount": str(amount * 100), "vnp_BankCode": "NCB",
              "vnp_BankTranNo": f"VNP{txn_no}", "vnp_CardType": "ATM",
              "vnp_OrderInfo": order_info, "vnp_PayDate": when.strftime("%Y%m%d%H%M%S"),
              "vnp_ResponseCode": response_code, "vnp_TmnCode": tmn_code,
              "vnp_TransactionNo": txn_no, "vnp_TransactionStatus": transaction_status,
              "vnp_TxnRef": txn_ref}
    for name in unsigned:
        fields.pop(name, None)
    fields["vnp_SecureHash"] = vnpay.secure_hash(fields, hash_secret)
    fields.update(overrides or {})
    for name in drop:
        fields.pop(name, None)
    return SignedCall("GET", query_string=urlencode(fields))


def momo_ipn(access_key: str, secret_key: str, *, order_id: str, amount: int,
             trans_id: int = 4088878653, result_code: int = 0, partner_code: str = "MOMO",
             response_time: datetime | None = None, overrides: dict | None = None,
             drop: tuple[str, ...] = (), unsigned: tuple[str, ...] = ()) -> SignedCall:
    """A MoMo IPN. ``unsigned`` fields are removed before signing (a well-signed but
    incomplete IPN); ``drop`` removes fields after signing."""
    stamp = int((response_time or now_utc()).timestamp() * 1000)
    body: dict[str, Any] = {
        "partnerCode": partner_code, "orderId": order_id, "requestId": order_id,
        "amount": amount, "orderInfo": "Thanh toan le phi", "orderType": "momo_wallet",
        "transId": trans_id, "resultCode": result_code,
        "message": "Thành công." if result_code == 0 else "Giao dịch thất bại.",
        "payType": "qr", "responseTime": stamp, "extraData": ""}
    for name in unsigned:
        body.pop(name, None)
    body["signature"] = momo.signature(body, access_key, secret_key)
    body.update(overrides or {})
    for name in drop:
        body.pop(name, None)
    return SignedCall("POST", _json(body), headers={"Content-Type": "application/json"})


def zalopay_callback(key2: str, *, app_trans_id: str, amount: int,
                     zp_trans_id: int = 240701000000123, app_id: int = 2553,
                     server_time: datetime | None = None, data_overrides: dict | None = None,
                     overrides: dict | None = None,
                     unsigned: tuple[str, ...] = ()) -> SignedCall:
    stamp = int((server_time or now_utc()).timestamp() * 1000)
    data = {"app_id": app_id, "app_trans_id": app_trans_id, "app_time": stamp - 60_000,
            "app_user": "feepay", "amount": amount, "embed_data": "{}", "item": "[]",
            "zp_trans_id": zp_trans_id, "server_time": stamp, "channel": 38,
            "merchant_user_id": "", "user_fee_amount": 0, "discount_amount": 0}
    for name in unsigned:
        data.pop(name, None)
    data_text = json.dumps(data, separators=(",", ":"))
    body: dict[str, Any] = {"data": data_text, "mac": zalopay.callback_mac(data_text, key2),
                            "type": 1}
    if data_overrides:  # tamper with data after signing
        body["data"] = json.dumps({**data, **data_overrides}, separators=(",", ":"))
    body.update(overrides or {})
    return SignedCall("POST", _json(body), headers={"Content-Type": "application/json"})


def sepay_webhook(*, txn_id: int, amount: int, content: str, api_key: str | None = None,
                  webhook_secret: str | None = None, stamp: int | None = None,
                  code: str | None = None, account_number: str = "0011000000001",
                  transfer_type: str = "in", when: datetime | None = None,
                  overrides: dict | None = None) -> SignedCall:
    at = (when or now_utc()).astimezone(VN_TZ)
    body = {"id": txn_id, "gateway": "Vietcombank",
            "transactionDate": at.strftime("%Y-%m-%d %H:%M:%S"),
            "accountNumber": account_number, "code": code, "content": content,
            "transferType": transfer_type, "transferAmount": amount, "accumulated": 0,
            "subAccount": None, "referenceCode": f"FT{txn_id:014d}",
            "description": f"BankAPINotify {content}"}
    body.update(overrides or {})
    raw = _json(body)
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Apikey {api_key}"
    if webhook_secret is not None:
        t = str(stamp if stamp is not None else int(now_utc().timestamp()))
        headers["X-SePay-Timestamp"] = t
        headers["X-SePay-Signature"] = "sha256=" + sepay.hmac_signature(t, raw, webhook_secret)
    return SignedCall("POST", raw, headers=headers)


def casso_webhook(checksum_key: str, *, txn_id: int, amount: int, description: str,
                  stamp_ms: int | None = None, account_number: str = "0011000000001",
                  when: datetime | None = None, overrides: dict | None = None,
                  drop: tuple[str, ...] = ()) -> SignedCall:
    at = (when or now_utc()).astimezone(VN_TZ)
    body = {"error": 0, "data": {
        "id": txn_id, "reference": f"FT{txn_id:014d}", "description": description,
        "amount": amount, "runningBalance": 0,
        "transactionDateTime": at.strftime("%Y-%m-%d %H:%M:%S"),
        "accountNumber": account_number, "bankName": "Vietcombank",
        "bankAbbreviation": "VCB", "virtualAccountNumber": "", "virtualAccountName": "",
        "counterAccountName": "NGUYEN VAN A", "counterAccountNumber": "0123456789",
        "counterAccountBankId": "970415", "counterAccountBankName": "VietinBank"}}
    for name in drop:  # removed before signing: a well-signed but incomplete push
        body["data"].pop(name, None)
    t = str(stamp_ms if stamp_ms is not None else int(now_utc().timestamp() * 1000))
    sig = casso.signature(body, t, checksum_key)
    if overrides:
        body["data"].update(overrides)
    return SignedCall("POST", _json(body), headers={
        "Content-Type": "application/json", casso.HEADER: f"t={t},v1={sig}"})


def bank_webhook(secrets: str | list[str], *, txn_id: str, amount: int | str, memo: str,
                 account_number: str = "0011000000001", stamp: int | None = None,
                 booked_at: datetime | None = None, direction: str = "credit",
                 overrides: dict | None = None, raw_body: bytes | None = None,
                 drop: tuple[str, ...] = ()) -> SignedCall:
    body = {"id": txn_id, "account_number": account_number, "amount": amount,
            "direction": direction,
            "booked_at": (booked_at or now_utc()).astimezone(VN_TZ).isoformat(),
            "memo": memo, "bank_ref": txn_id, "payer_name": "NGUYEN VAN A",
            "payer_account": "0123456789", "currency": "VND"}
    body.update(overrides or {})
    for name in drop:
        body.pop(name, None)
    raw = raw_body if raw_body is not None else _json(body)
    t = stamp if stamp is not None else int(now_utc().timestamp())
    return SignedCall("POST", raw, headers={
        "Content-Type": "application/json",
        signed_webhook.HEADER: signed_webhook.signature_header(raw, secrets, t)})


# --- a small world to receive callbacks in (tests, benchmarks, local trials) -------------

#: Secrets of the channels :func:`callback_world` creates, by adapter.
SECRETS: dict[str, dict[str, str]] = {
    "vnpay": {"hash_secret": "VNPAYTESTSECRET0123456789ABCDEF"},
    "momo": {"access_key": "F8BBA842ECF85", "secret_key": "K951B6PE1waDMi640xX08PD3vg6EkVlz"},
    "zalopay": {"key1": "zp-test-key1-0123456789", "key2": "zp-test-key2-0123456789"},
    "sepay": {"api_key": "sepay-test-api-key-0123456789"},
    "sepay-hmac": {"webhook_secret": "sepay-test-hmac-secret-0123"},
    "casso": {"checksum_key": "casso-test-checksum-key-0123456789"},
    "bankhook": {"webhook_secret": "whsec-test-0123456789abcdef"},
}
MERCHANTS = {"vnpay": "FEEPAY01", "momo": "MOMO", "zalopay": "2553"}
FEES = {"LP-T-01": 50_000, "LP-T-02": 20_000, "P-T-03": 100_000}


@dataclass
class CallbackWorld:
    """What :func:`callback_world` made: one unit, its account, fee codes, channels."""

    unit: str
    account_id: int
    other_account_id: int
    channels: dict[str, str]  # adapter (or "sepay-hmac") -> channel name

    def issue(self, fp: Any, dossier: str, *fees: str) -> Any:
        return fp.references.issue(dossier, self.unit, list(fees or ["LP-T-01"]))


def callback_world(fp: Any) -> CallbackWorld:
    """Province 40 as the collecting unit, two active accounts, three fees, one channel per
    built-in adapter (named like the adapter; ``sepay-hmac`` for SePay's HMAC mode)."""
    from datetime import date

    start = date(2025, 7, 1)
    fp.units.add("40", "", "province")
    _treasury_user(fp, "treasury.test")
    accounts = []
    for number in ("912345678901", "912345678902"):
        acc = fp.accounts.register("40", "970415", number, "DON VI THU PHI TEST", "both",
                                   valid_from=start)
        fp.accounts.verify(acc.id, by="treasury.test")
        fp.accounts.activate(acc.id)
        accounts.append(acc.id)
    for i, (code, amount) in enumerate(FEES.items()):
        kind = "phi" if code.startswith("P-") else "le_phi"
        fp.fees.add(f"1.00{i}001", code, f"Khoản thu thử {code}", kind, amount,
                    "50%" if kind == "phi" else None, effective_from=start)
    channels = {}
    for key, secrets in SECRETS.items():
        adapter = key.split("-")[0]
        settings = {"auth": "hmac"} if key == "sepay-hmac" else {}
        fp.channels.add(key, adapter, secrets=secrets, account_id=accounts[0],
                        merchant_id=MERCHANTS.get(adapter), settings=settings)
        channels[key] = key
    return CallbackWorld("40", accounts[0], accounts[1], channels)


def _treasury_user(fp: Any, username: str) -> None:
    """A treasury user who cannot sign in (no password hash: no scrypt cost per test)."""
    from feepay.storage.tables import UserRow

    with fp.db.session() as s:
        s.add(UserRow(username=username, display_name="Kho bạc (test)", password_hash="!",
                      role="treasury", unit_code=None, active=True, created_at=now_utc()))


def deliver(base_url: str, path: str, call: SignedCall,
            timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one signed call over HTTP (a fresh connection); returns (status, body).

    Importable (so process pools can pickle it); raises on connection errors.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = f"{path}?{call.query_string}" if call.query_string else path
        conn.request(call.method, target, body=call.body if call.method == "POST" else None,
                     headers=call.headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


#: Channel keys of :func:`callback_world`, in the order :func:`signed_payment` cycles them.
KINDS = ("vnpay", "momo", "zalopay", "sepay-hmac", "casso", "bankhook")


def signed_payment(kind: str, *, code: str, amount: int, txn: int,
                   secret: str | None = None) -> tuple[str, SignedCall]:
    """A signed successful payment of ``amount`` for reference ``code`` through the
    :func:`callback_world` channel ``kind``; returns (URL path, call). ``secret`` replaces
    the channel's secret (to forge one)."""
    s = SECRETS
    if kind == "vnpay":
        call = vnpay_ipn(secret or s["vnpay"]["hash_secret"], txn_ref=code, amount=amount,
                         txn_no=str(txn))
    elif kind == "momo":
        call = momo_ipn(s["momo"]["access_key"], secret or s["momo"]["secret_key"],
                        order_id=code, amount=amount, trans_id=txn)
    elif kind == "zalopay":
        call = zalopay_callback(secret or s["zalopay"]["key2"], app_trans_id=f"250701_{code}",
                                amount=amount, zp_trans_id=txn)
    elif kind in ("sepay", "sepay-hmac"):
        call = (sepay_webhook(txn_id=txn, amount=amount, content=code,
                              webhook_secret=secret or s["sepay-hmac"]["webhook_secret"])
                if kind == "sepay-hmac" else
                sepay_webhook(txn_id=txn, amount=amount, content=code,
                              api_key=secret or s["sepay"]["api_key"]))
    elif kind == "casso":
        call = casso_webhook(secret or s["casso"]["checksum_key"], txn_id=txn, amount=amount,
                             description=code)
    elif kind == "bankhook":
        call = bank_webhook(secret or s["bankhook"]["webhook_secret"], txn_id=f"FT{txn}",
                            amount=amount, memo=code)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return f"/callbacks/{kind.split('-')[0]}/{kind}", call


def is_acknowledged(kind: str, status: int, body: bytes) -> bool:
    """Did the provider's reply acknowledge the delivery (so it will not retry)?"""
    if kind == "vnpay":
        return status == 200 and json.loads(body)["RspCode"] in ("00", "02", "01", "04")
    if kind == "momo":
        return status == 204
    if kind == "zalopay":
        return status == 200 and json.loads(body)["return_code"] in (1, 2)
    return status == 200


def is_rejected_signature(kind: str, status: int, body: bytes) -> bool:
    """Was the delivery refused as forged (the provider's 'invalid signature' reply)?"""
    if kind == "vnpay":
        return status == 200 and json.loads(body)["RspCode"] == "97"
    if kind == "zalopay":
        return status == 200 and json.loads(body)["return_code"] == -1
    return status == 401
