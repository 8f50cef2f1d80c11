"""Callbacks that must not lose money or leak secrets: bank ids scoped per source account,
requests our event model refuses, a row that cannot be replayed, credential headers at rest
— on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from adapters import testing as T
from adapters.banks.signed_webhook import SignedBankWebhook
from adapters.pipeline import CallbackPipeline, replay_pending
from adapters.registry import Registry
from adapters.testing import SECRETS, CallbackWorld, callback_world
from feepay.api import FeePay
from feepay.models import InboxState, RawRequest, ReferenceState
from feepay.storage.tables_callbacks import InboxRow, PaymentEventRow
from webapp import create_app

HOOK = SECRETS["bankhook"]["webhook_secret"]
OTHER_HOOK = "whsec-second-bank-0123456789"


@pytest.fixture
def world(fp: FeePay) -> CallbackWorld:
    return callback_world(fp)


@pytest.fixture
def client(fp: FeePay, world: CallbackWorld) -> FlaskClient:
    return create_app(fp=fp).test_client()


def hook(client: FlaskClient, channel: str, secret: str, txn: str, amount: int,
         memo: str) -> tuple[int, dict]:
    call = T.bank_webhook(secret, txn_id=txn, amount=amount, memo=memo)
    resp = client.post(f"/callbacks/bankhook/{channel}", data=call.body, headers=call.headers)
    return resp.status_code, resp.get_json()


def events(fp: FeePay) -> list[tuple[str, str, str, int, bool]]:
    with fp.db.session() as s:
        return [(e.txn_scope, e.provider_txn_id, e.reference_code, e.amount, e.applied)
                for e in s.scalars(select(PaymentEventRow).order_by(PaymentEventRow.id))]


# --- idempotency scope ------------------------------------------------------------------------

def test_two_banks_may_send_the_same_transaction_id(fp: FeePay, world: CallbackWorld,
                                                    client: FlaskClient) -> None:
    """Bank ids are unique per source account only: the second bank's payment with the
    same id is a new payment, not a duplicate of the first bank's."""
    fp.channels.add("bankhook-2", "bankhook", secrets={"webhook_secret": OTHER_HOOK},
                    account_id=world.other_account_id)
    first, second = world.issue(fp, "HS-SCOPE-1"), world.issue(fp, "HS-SCOPE-2")
    ch1, ch2 = fp.channels.get("bankhook").id, fp.channels.get("bankhook-2").id

    assert hook(client, "bankhook", HOOK, "FT42", 50_000, first.code)[1]["duplicate"] is False
    status, body = hook(client, "bankhook-2", OTHER_HOOK, "FT42", 50_000, second.code)
    assert status == 200 and body["duplicate"] is False
    # a redelivery on either channel is still a duplicate of its own payment
    assert hook(client, "bankhook-2", OTHER_HOOK, "FT42", 50_000, second.code)[1][
        "duplicate"] is True
    assert hook(client, "bankhook", HOOK, "FT42", 50_000, first.code)[1]["duplicate"] is True

    assert events(fp) == [(str(ch1), "FT42", first.code, 50_000, True),
                          (str(ch2), "FT42", second.code, 50_000, True)]
    assert fp.references.get(first.code).state is ReferenceState.PAID
    assert fp.references.get(second.code).state is ReferenceState.PAID


def test_gateway_ids_stay_provider_wide(fp: FeePay, world: CallbackWorld,
                                        client: FlaskClient) -> None:
    ref = world.issue(fp, "HS-SCOPE-3")
    call = T.vnpay_ipn(SECRETS["vnpay"]["hash_secret"], txn_ref=ref.code, amount=50_000,
                       txn_no="7001")
    assert client.get(call.url("/callbacks/vnpay/vnpay")).get_json()["RspCode"] == "00"
    assert events(fp) == [("", "7001", ref.code, 50_000, True)]


# --- requests our model refuses, and rows that cannot be replayed ------------------------------

def test_overlong_provider_id_is_rejected_as_malformed(fp: FeePay, world: CallbackWorld,
                                                       client: FlaskClient) -> None:
    """A well-signed request with a value our event model refuses (a MoMo transId of 121
    digits) gets the provider's 'bad request' reply and a rejected inbox row naming the
    field — not a 500 page and a row that replay trips over forever."""
    ref = world.issue(fp, "HS-LONG")
    momo = SECRETS["momo"]
    call = T.momo_ipn(momo["access_key"], momo["secret_key"], order_id=ref.code,
                      amount=50_000, trans_id=10**120)
    resp = client.post("/callbacks/momo/momo", data=call.body, headers=call.headers)
    assert resp.status_code == 400
    assert resp.get_json()["message"] == (
        "provider_txn_id: String should have at most 100 characters")
    with fp.db.session() as s:
        row = s.scalars(select(InboxRow)).one()
        assert (row.state, row.reason) == (
            "rejected", "malformed: provider_txn_id: String should have at most 100 characters")
    assert events(fp) == []
    assert fp.references.get(ref.code).amount_paid == 0
    assert replay_pending(fp) == []  # nothing left for replay to trip over


def test_bank_webhook_names_the_refused_field(fp: FeePay, world: CallbackWorld,
                                              client: FlaskClient) -> None:
    ref = world.issue(fp, "HS-LONG-2")
    status, body = hook(client, "bankhook", HOOK, "X" * 150, 50_000, ref.code)
    assert (status, body) == (400, {"ok": False,
                                    "error": "id: String should have at most 100 characters"})
    with fp.db.session() as s:
        assert s.scalars(select(InboxRow.reason)).one() == (
            "malformed: id: String should have at most 100 characters")


class _FlakyBankWebhook(SignedBankWebhook):
    """The bank webhook adapter with a bug on one memo (stands in for any adapter bug)."""

    def parse(self, request: RawRequest):  # noqa: ANN201
        if b"BOOM" in request.body:
            raise RuntimeError("adapter bug")
        return super().parse(request)


def test_replay_goes_on_past_a_row_that_fails(fp: FeePay, world: CallbackWorld) -> None:
    ref = world.issue(fp, "HS-POISON")
    registry = Registry(include_plugins=False)
    registry.register(_FlakyBankWebhook)
    pipeline = CallbackPipeline(fp, registry)
    calls = [T.bank_webhook(HOOK, txn_id="FT-P1", amount=20_000, memo=f"{ref.code} BOOM"),
             T.bank_webhook(HOOK, txn_id="FT-P2", amount=30_000, memo=ref.code)]
    ids = [fp.inbox.receive("bankhook", "bankhook", c.raw(path="/callbacks/bankhook/x"))
           for c in calls]

    outcomes = replay_pending(fp, pipeline=pipeline)

    assert [(o.inbox_id, o.state) for o in outcomes] == [
        (ids[0], InboxState.RECEIVED), (ids[1], InboxState.PROCESSED)]
    assert outcomes[0].reason == "error while reading the request"
    assert outcomes[0].reply.status == 503  # live, the provider would retry
    assert fp.references.get(ref.code).amount_paid == 30_000
    assert [i.id for i in fp.inbox.pending()] == [ids[0]]  # kept for the next replay

    fixed = replay_pending(fp)  # the adapter fixed (the built-in one): the row goes through
    assert [(o.inbox_id, o.state) for o in fixed] == [(ids[0], InboxState.PROCESSED)]
    assert fp.references.get(ref.code).amount_paid == 50_000


def test_replay_reports_a_row_whose_processing_raises(fp: FeePay,
                                                      world: CallbackWorld) -> None:
    """Even an error outside the adapter (here: the pipeline itself raising) is logged,
    reported for that row, and the next rows still run."""
    ref = world.issue(fp, "HS-POISON-2")
    calls = [T.bank_webhook(HOOK, txn_id=f"FT-Q{i}", amount=25_000, memo=ref.code)
             for i in range(2)]
    ids = [fp.inbox.receive("bankhook", "bankhook", c.raw(path="/callbacks/bankhook/x"))
           for c in calls]

    class Exploding(CallbackPipeline):
        def replay(self, item):  # noqa: ANN001, ANN201
            if item.id == ids[0]:
                raise RuntimeError("database went away")
            return super().replay(item)

    outcomes = replay_pending(fp, pipeline=Exploding(fp))
    assert [o.state for o in outcomes] == [InboxState.RECEIVED, InboxState.PROCESSED]
    assert outcomes[0].reason == "replay failed: RuntimeError: database went away"
    assert fp.references.get(ref.code).amount_paid == 25_000


# --- credentials at rest ----------------------------------------------------------------------

def test_api_key_header_is_sealed_at_rest_and_replay_still_verifies(
        fp: FeePay, world: CallbackWorld, client: FlaskClient) -> None:
    """SePay's API-key mode sends the key in ``Authorization``: it must not be stored in
    clear, yet a replayed request must still verify with it."""
    key = SECRETS["sepay"]["api_key"]
    ref = world.issue(fp, "HS-SEAL")
    live = T.sepay_webhook(txn_id=880001, amount=50_000, content=ref.code, api_key=key)
    assert client.post("/callbacks/sepay/sepay", data=live.body,
                       headers=live.headers).status_code == 200
    crashed = T.sepay_webhook(txn_id=880002, amount=50_000, content=ref.code, api_key=key)
    inbox_id = fp.inbox.receive("sepay", "sepay", crashed.raw(path="/callbacks/sepay/sepay"))

    with fp.db.engine.connect() as conn:  # every text column of every inbox row
        rows = conn.execute(text("SELECT * FROM callback_inbox")).mappings().all()
    assert len(rows) == 2
    for row in rows:
        stored = json.dumps({k: v for k, v in row.items() if k != "body"}, default=str)
        assert key not in stored
        assert "authorization" not in json.loads(row["headers"])
        assert row["sealed_headers"]
    assert fp.inbox.get(inbox_id).request.headers["authorization"] == f"Apikey {key}"

    outcomes = replay_pending(fp)
    assert [(o.inbox_id, o.state) for o in outcomes] == [(inbox_id, InboxState.PROCESSED)]
    assert fp.references.get(ref.code).amount_paid == 100_000


def test_sealed_headers_follow_key_rotation(fp: FeePay, world: CallbackWorld) -> None:
    from feepay.crypto import SEALED_COLUMNS, rotate_all

    assert (InboxRow, "sealed_headers") in SEALED_COLUMNS
    call = T.sepay_webhook(txn_id=880003, amount=1_000, content="x",
                           api_key=SECRETS["sepay"]["api_key"])
    inbox_id = fp.inbox.receive("sepay", "sepay", call.raw(path="/callbacks/sepay/sepay"))
    with fp.db.session() as s:
        before = s.get(InboxRow, inbox_id).sealed_headers
    assert rotate_all(fp)["callback_inbox.sealed_headers"] == 1
    with fp.db.session() as s:
        assert s.get(InboxRow, inbox_id).sealed_headers != before
    assert fp.inbox.get(inbox_id).request.headers["authorization"].startswith("Apikey ")


def test_database_down_gets_a_retry_reply(tmp_path: Path) -> None:
    """If even the inbox commit fails (the database is unusable), the provider gets a JSON
    503 to retry later — not an HTML error page."""
    db = tmp_path / "gone.db"
    fp = FeePay.open(f"sqlite:///{db}", migrate=True)
    callback_world(fp)
    client = create_app(fp=fp).test_client()
    with fp.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE callback_inbox"))
    call = T.bank_webhook(HOOK, txn_id="FT-DOWN", amount=1_000, memo="x")
    resp = client.post("/callbacks/bankhook/bankhook", data=call.body, headers=call.headers)
    assert (resp.status_code, resp.get_json()) == (503, {"error": "temporary error, retry"})
    assert client.get("/callbacks/bankhook/bankhook/extra").status_code == 404
    fp.close()


def test_keys_rotate_seals_headers_kept_in_clear_before_0005(
        fp: FeePay, world: CallbackWorld) -> None:
    from click.testing import CliRunner

    from feepay.money import now_utc
    from webapp.cli import main

    key = SECRETS["sepay"]["api_key"]
    with fp.db.session() as s:  # a row as migration 0005 found it: the key in clear
        row = InboxRow(received_at=now_utc(), adapter="sepay", channel="sepay",
                       method="POST", path="/callbacks/sepay/sepay", query_string="",
                       headers=json.dumps({"authorization": f"Apikey {key}",
                                           "content-type": "application/json"}),
                       body=b"{}", body_size=2, state="processed", attempts=1)
        s.add(row)
        s.flush()
        row_id = row.id
    out = CliRunner().invoke(main, ["--db", fp.db.url, "keys", "rotate", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["callback_inbox.headers sealed (were clear)"] == 1
    with fp.db.engine.connect() as conn:
        headers, sealed = conn.execute(text(
            "SELECT headers, sealed_headers FROM callback_inbox WHERE id = :i"),
            {"i": row_id}).one()
    assert key not in headers and sealed
    assert fp.inbox.get(row_id).request.headers["authorization"] == f"Apikey {key}"


def test_unreadable_sealed_headers_leave_the_row_for_later(
        fp: FeePay, world: CallbackWorld) -> None:
    """A row sealed under a key that is no longer configured: listing still works, replay
    keeps the row 'received' with the reason, and processes it once the key is back."""
    from feepay.crypto import Sealer, generate_key

    ref = world.issue(fp, "HS-NOKEY")
    call = T.sepay_webhook(txn_id=880009, amount=50_000, content=ref.code,
                           api_key=SECRETS["sepay"]["api_key"])
    inbox_id = fp.inbox.receive("sepay", "sepay", call.raw(path="/callbacks/sepay/sepay"))
    other = FeePay.open(fp.db.url, sealer=Sealer([generate_key()]))
    try:
        assert [i.id for i in other.inbox.list()] == [inbox_id]
        outcomes = replay_pending(other)
        assert [(o.inbox_id, o.state) for o in outcomes] == [(inbox_id, InboxState.RECEIVED)]
        assert "cannot be opened" in outcomes[0].reason
    finally:
        other.close()
    assert [(o.inbox_id, o.state) for o in replay_pending(fp)] == [
        (inbox_id, InboxState.PROCESSED)]
    assert fp.references.get(ref.code).amount_paid == 50_000
