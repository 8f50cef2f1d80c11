"""Callback flows beyond one request: reference states, flags, rotation, replay, polling,
routing, the CLI and /healthz — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import testing as T
from adapters.pipeline import CallbackPipeline
from adapters.poller import poll_zalopay
from adapters.testing import SECRETS, CallbackWorld, callback_world
from feepay.api import FeePay
from feepay.models import InboxState, PaymentFlag, PaymentStatus, ReferenceState
from feepay.money import now_utc
from webapp import create_app
from webapp.cli import main

HOOK = SECRETS["bankhook"]["webhook_secret"]
VNP = SECRETS["vnpay"]["hash_secret"]


@pytest.fixture
def world(fp: FeePay) -> CallbackWorld:
    return callback_world(fp)


@pytest.fixture
def client(fp: FeePay, world: CallbackWorld) -> FlaskClient:
    return create_app(fp=fp).test_client()


def hook(client: FlaskClient, txn: str, amount: int, memo: str, *,
         secret: str = HOOK, channel: str = "bankhook") -> dict:
    call = T.bank_webhook(secret, txn_id=txn, amount=amount, memo=memo)
    resp = client.post(f"/callbacks/bankhook/{channel}", data=call.body, headers=call.headers)
    return {"status": resp.status_code, **(resp.get_json() or {})}


def vnpay(client: FlaskClient, code: str, amount: int, txn: str, **kw: object) -> dict:
    call = T.vnpay_ipn(VNP, txn_ref=code, amount=amount, txn_no=txn, **kw)
    return client.get(call.url("/callbacks/vnpay/vnpay")).get_json()


def flags_of(fp: FeePay, txn: str) -> tuple[PaymentFlag, ...]:
    return next(e.flags for e in fp.payments.list() if e.provider_txn_id == txn)


# --- reference states and flags ---------------------------------------------------------------

def test_partial_then_complete_then_overpaid(fp: FeePay, world: CallbackWorld,
                                             client: FlaskClient) -> None:
    ref = world.issue(fp, "HS-1", "LP-T-01")  # 50 000
    assert hook(client, "FT1", 20_000, f"{ref.code} lan 1")["flags"] == ["amount_mismatch"]
    assert fp.references.get(ref.code).state is ReferenceState.PARTIALLY_PAID
    assert hook(client, "FT2", 30_000, f"{ref.code} lan 2")["flags"] == []  # exactly the rest
    got = fp.references.get(ref.code)
    assert (got.state, got.amount_paid) == (ReferenceState.PAID, 50_000)
    third = hook(client, "FT3", 50_000, f"{ref.code} lan 3")  # paid twice
    assert third["flags"] == ["duplicate_payment"]
    got = fp.references.get(ref.code)
    assert (got.state, got.amount_paid) == (ReferenceState.OVERPAID, 100_000)
    assert sum(e.amount for e in fp.payments.list(reference=ref.code) if e.applied) == 100_000


def test_vnpay_second_payment_of_paid_order_is_02_but_recorded(
        fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    ref = world.issue(fp, "HS-2")
    assert vnpay(client, ref.code, 50_000, "1001")["RspCode"] == "00"
    assert vnpay(client, ref.code, 50_000, "1002")["RspCode"] == "02"
    assert flags_of(fp, "1002") == (PaymentFlag.DUPLICATE_PAYMENT,)
    assert fp.references.get(ref.code).amount_paid == 100_000


def test_failed_payment_then_success_of_same_transaction(
        fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    ref = world.issue(fp, "HS-3")
    assert vnpay(client, ref.code, 50_000, "2001", response_code="24",
                 transaction_status="02")["RspCode"] == "00"
    assert fp.references.get(ref.code).state is ReferenceState.ISSUED
    assert vnpay(client, ref.code, 50_000, "2001")["RspCode"] == "00"
    events = fp.payments.list(reference=ref.code)
    assert [(e.status, e.applied) for e in events] == [(PaymentStatus.FAILED, False),
                                                       (PaymentStatus.SUCCESS, True)]
    assert fp.references.get(ref.code).state is ReferenceState.PAID


def test_paid_after_expiry_and_cancelled_are_kept_not_applied(
        fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    old = fp.references.issue("HS-OLD", world.unit, ["LP-T-01"],
                              now=now_utc() - timedelta(days=30))
    assert hook(client, "FT10", 50_000, old.code)["flags"] == ["paid_after_expiry"]
    assert fp.references.get(old.code).state is ReferenceState.ISSUED
    assert fp.references.expire_due() == 1
    assert hook(client, "FT11", 50_000, old.code)["flags"] == ["paid_after_expiry"]
    assert fp.references.get(old.code).state is ReferenceState.EXPIRED
    gone = world.issue(fp, "HS-CANCEL")
    fp.references.cancel(gone.code, "dossier withdrawn")
    assert hook(client, "FT12", 50_000, gone.code)["flags"] == ["reference_cancelled"]
    assert fp.references.get(gone.code).state is ReferenceState.CANCELLED
    kept = {e.provider_txn_id: e.applied for e in fp.payments.list()}
    assert kept == {"FT10": False, "FT11": False, "FT12": False}


def test_ambiguous_memo_and_account_mismatch(fp: FeePay, world: CallbackWorld,
                                             client: FlaskClient) -> None:
    a, b = world.issue(fp, "HS-A"), world.issue(fp, "HS-B")
    assert hook(client, "FT20", 100_000, f"{a.code} {b.code}")["flags"] == \
        ["ambiguous_reference"]
    assert fp.references.get(a.code).amount_paid == 0
    fp.channels.add("other-bank", "bankhook", secrets={"webhook_secret": "o"},
                    account_id=world.other_account_id)
    assert hook(client, "FT21", 50_000, a.code, secret="o", channel="other-bank")["flags"] == \
        ["account_mismatch"]
    assert fp.references.get(a.code).state is ReferenceState.PAID


def test_outgoing_transfer_is_ignored(fp: FeePay, world: CallbackWorld,
                                      client: FlaskClient) -> None:
    call = T.sepay_webhook(txn_id=5, amount=1000, content="rut tien", transfer_type="out",
                           api_key=SECRETS["sepay"]["api_key"])
    resp = client.post("/callbacks/sepay/sepay", data=call.body, headers=call.headers)
    assert (resp.status_code, resp.get_json()) == (200, {"success": True})
    assert fp.payments.list() == []
    assert fp.inbox.counts()["ignored"] == 1


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from([10_000, 20_000, 50_000]),
                          st.booleans()), min_size=1, max_size=12))
def test_amount_paid_is_the_sum_of_applied_events(
        fp: FeePay, world: CallbackWorld, client: FlaskClient,
        deliveries: list[tuple[int, int, bool]]) -> None:
    """Any mix of payments, redeliveries and forgeries: amount_paid == Σ applied amounts
    and the state follows from it."""
    ref = world.issue(fp, f"HS-H{now_utc().timestamp()}")
    for txn, amount, forged in deliveries:
        hook(client, f"H{ref.code}{txn}-{amount}", amount, ref.code,
             secret="forged" if forged else HOOK)
    got = fp.references.get(ref.code)
    applied = sum(e.amount for e in fp.payments.list(reference=ref.code) if e.applied)
    assert got.amount_paid == applied
    expected_state = (ReferenceState.ISSUED if applied == 0 else
                      ReferenceState.PARTIALLY_PAID if applied < got.amount_due else
                      ReferenceState.PAID if applied == got.amount_due else
                      ReferenceState.OVERPAID)
    assert got.state is expected_state


# --- routing --------------------------------------------------------------------------------

def test_unknown_channel_adapter_method_disabled(fp: FeePay, world: CallbackWorld,
                                                 client: FlaskClient) -> None:
    assert client.post("/callbacks/paypal/x", data=b"{}").status_code == 404
    assert client.post("/callbacks/bankhook/nope", data=b"{}").status_code == 404
    assert client.post("/callbacks/momo/bankhook", data=b"{}").status_code == 404  # mismatch
    assert client.get("/callbacks/momo/momo").status_code == 405
    fp.channels.set_active("bankhook", False)
    assert hook(client, "FT30", 1, "x")["status"] == 404
    reasons = [i.reason for i in fp.inbox.list()]
    assert reasons == ["channel bankhook is disabled", "method GET not allowed",
                       "no momo channel named 'bankhook'", "no bankhook channel named 'nope'",
                       "unknown adapter 'paypal'"]
    assert fp.inbox.counts()["rejected"] == 5


def test_healthz(fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert (resp.status_code, resp.get_json()) == (200, {"status": "ok", "database": "ok"})


# --- rotation and replay --------------------------------------------------------------------

def test_secret_rotation(fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    fp.channels.rotate_secret("bankhook", "webhook_secret", "new-secret")
    ref = world.issue(fp, "HS-ROT")
    assert hook(client, "FT40", 1000, ref.code)["ok"]                       # old still valid
    assert hook(client, "FT41", 1000, ref.code, secret="new-secret")["ok"]  # new valid
    old_id = next(s.id for s in fp.channels.get("bankhook").secrets if s.active)
    fp.channels.retire_secret("bankhook", old_id)
    assert hook(client, "FT42", 1000, ref.code)["status"] == 401
    assert hook(client, "FT43", 1000, ref.code, secret="new-secret")["ok"]
    secrets = fp.channels.get("bankhook").secrets
    assert [(s.active, s.retired_at is not None) for s in secrets] == [(False, True),
                                                                        (True, False)]
    assert all(len(s.fingerprint) == 8 for s in secrets)


def test_replay_processes_only_unprocessed_rows(fp: FeePay, world: CallbackWorld,
                                                client: FlaskClient) -> None:
    """A crash after the inbox commit leaves rows 'received'; replay records them once,
    verifying with the secrets active when they were received."""
    ref = world.issue(fp, "HS-REPLAY")
    pipeline = CallbackPipeline(fp)
    calls = [T.bank_webhook(HOOK, txn_id=f"FT5{i}", amount=10_000, memo=ref.code)
             for i in range(3)]
    ids = [fp.inbox.receive("bankhook", "bankhook", c.raw(path="/callbacks/bankhook/bankhook"))
           for c in calls]  # received, then "crash"
    pipeline.handle("bankhook", "bankhook", calls[0].raw())  # one was redelivered live
    fp.channels.rotate_secret("bankhook", "webhook_secret", "after-crash",
                              retire_previous=True)  # rotated before the replay
    runner = CliRunner()
    out = runner.invoke(main, ["--db", fp.db.url, "inbox", "replay", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["replayed"] == 3
    assert report["outcomes"] == {"duplicate": 1, "processed": 2}
    assert [i["inbox_id"] for i in report["items"]] == ids
    assert fp.references.get(ref.code).amount_paid == 30_000
    again = json.loads(runner.invoke(main, ["--db", fp.db.url, "inbox", "replay",
                                            "--json"]).output)
    assert again == {"replayed": 0, "outcomes": {}, "items": []}
    listing = runner.invoke(main, ["--db", fp.db.url, "inbox", "list", "--json"])
    assert json.loads(listing.output)["counts"]["processed"] == 4


# --- ZaloPay poller (a real HTTP server stands in for ZaloPay) ---------------------------------

class _ZaloPayQuery(BaseHTTPRequestHandler):
    answers: dict[str, dict] = {}

    def do_POST(self) -> None:  # noqa: N802
        from urllib.parse import parse_qs

        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        body = json.dumps(self.answers.get(form["app_trans_id"][0],
                                           {"return_code": 3})).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def zalopay_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ZaloPayQuery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/query"
    server.shutdown()
    server.server_close()


def test_zalopay_poll_records_lost_callback_once(fp: FeePay, world: CallbackWorld,
                                                 client: FlaskClient, zalopay_url: str) -> None:
    paid, open_ = world.issue(fp, "HS-ZP1"), world.issue(fp, "HS-ZP2")
    fp.channels.add("zp-poll", "zalopay", merchant_id="2553", account_id=world.account_id,
                    secrets=SECRETS["zalopay"], settings={"query_url": zalopay_url})
    channel = fp.channels.get("zp-poll")
    orders = {paid.code: f"250701_{paid.code}", open_.code: f"250701_{open_.code}"}
    for order in orders.values():
        fp.payments.open_order(channel, order, 50_000)
    _ZaloPayQuery.answers = {orders[paid.code]: {
        "return_code": 1, "is_processing": False, "amount": 50_000, "zp_trans_id": 555,
        "server_time": int(now_utc().timestamp() * 1000)}}
    report = poll_zalopay(fp, "zp-poll")
    assert (report.paid, report.still_open) == ([orders[paid.code]], [orders[open_.code]])
    assert fp.references.get(paid.code).state is ReferenceState.PAID
    assert fp.inbox.list(limit=1)[0].request.method == "POLL"
    # the lost callback arrives after all: a duplicate, not a second payment
    call = T.zalopay_callback(SECRETS["zalopay"]["key2"], app_trans_id=orders[paid.code],
                              amount=50_000, zp_trans_id=555)
    resp = client.post("/callbacks/zalopay/zp-poll", data=call.body, headers=call.headers)
    assert resp.get_json()["return_code"] == 2
    assert fp.references.get(paid.code).amount_paid == 50_000
    again = poll_zalopay(fp, "zp-poll")
    assert again.asked == 1 and again.still_open == [orders[open_.code]]


# --- CLI ------------------------------------------------------------------------------------

def test_channels_cli(fp: FeePay, world: CallbackWorld) -> None:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> tuple[int, str]:  # noqa: A002
        res = runner.invoke(main, ["--db", fp.db.url, "channels", *args], input=input)
        return res.exit_code, res.output

    code, out = run("add", "vnp-cli", "--adapter", "vnpay", "--account",
                    str(world.account_id), "--merchant", "TMN1", "--secret",
                    "hash_secret=s3cret", "--json")
    assert code == 0, out
    added = json.loads(out)
    assert (added["adapter"], added["merchant_id"]) == ("vnpay", "TMN1")
    assert "s3cret" not in out
    code, out = run("add", "momo-cli", "--adapter", "momo", "--secret", "access_key",
                    input="AK\nAK\nSK-secret\nSK-secret\n")
    assert code == 2 and "needs secret(s) secret_key" in out
    code, out = run("add", "x", "--adapter", "paypal", "--secret", "a=b")
    assert code == 2 and "no callback adapter named 'paypal'" in out
    code, out = run("add", "Bad Name", "--adapter", "bankhook", "--secret", "webhook_secret=x")
    assert code == 2 and "channel name" in out
    code, out = run("rotate-secret", "vnp-cli", "hash_secret", "--value", "n3w", "--json")
    assert code == 0 and [s["active"] for s in json.loads(out)["secrets"]] == [True, True]
    first = json.loads(out)["secrets"][0]["id"]
    code, out = run("retire-secret", "vnp-cli", str(first))
    assert code == 0 and "retired" in out
    code, out = run("list")
    assert code == 0 and "vnp-cli: vnpay" in out and "/callbacks/vnpay/vnp-cli" in out
    assert fp.channels.credentials("vnp-cli").values("hash_secret") == ("n3w",)
    assert [e["action"] for e in fp.audit.entries("channel", "vnp-cli")] == [
        "channels.add", "channels.rotate_secret", "channels.retire_secret"]


def test_inbox_state_enum_matches_table() -> None:
    from feepay.storage.tables_callbacks import INBOX_STATES

    assert tuple(s.value for s in InboxState) == INBOX_STATES
