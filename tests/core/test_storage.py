"""Migrations run up from empty and down again on both databases; `init` twice is harmless."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from feepay.storage.engine import Database

CORE_TABLES = {"units", "users", "collection_accounts", "fee_items", "payment_references",
               "reference_items", "audit_log"}


def _fresh_pg_url() -> str:
    base = os.environ.get("FEEPAY_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL tests skipped: set FEEPAY_TEST_POSTGRES_URL")
    name = f"feepay_migr_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def _drop_pg(url: str) -> None:
    base = os.environ["FEEPAY_TEST_POSTGRES_URL"]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path):  # noqa: ANN001, ANN201
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("pg_base_url")  # skip/fail exactly like the other PG tests
    url = _fresh_pg_url()
    yield url
    _drop_pg(url)


def test_upgrade_from_empty_downgrade_and_again(empty_url: str) -> None:
    db = Database(empty_url)
    assert db.current_revision() is None
    db.upgrade()
    head = db.current_revision()
    assert head is not None
    assert set(inspect(db.engine).get_table_names()) >= CORE_TABLES
    db.upgrade()  # twice: harmless
    assert db.current_revision() == head
    db.downgrade("base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.upgrade()
    assert db.current_revision() == head
    db.dispose()


def test_schema_matches_models(db_url: str) -> None:
    """The migrations build exactly what the models describe (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from feepay.storage.base import Base

    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


DATA_TABLES = ("units", "collection_accounts", "payment_references", "reference_items",
               "channels", "callback_inbox", "payment_events", "statement_lines",
               "recon_runs", "recon_matches", "recon_mismatches", "audit_log")


def _counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in DATA_TABLES}


def _scopes(db: Database) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT adapter, channel_id, txn_scope FROM payment_events ORDER BY id"))]


def test_migrations_keep_a_played_day(empty_url: str, tmp_path) -> None:  # noqa: ANN001
    """Down to 0004 and up again on a database holding a whole demo day: every row stays,
    cancelled references keep their cancellation, foreign keys are enforced again after,
    and the audit chain still verifies. (SQLite re-creates tables that other tables
    reference: without foreign keys off during the migration the DROP fails.)"""
    from feepay.api import FeePay
    from reconcile.demo import run_demo_day

    fp = FeePay.open(empty_url)
    run_demo_day(fp, seed=3, dossiers=30, out_dir=tmp_path / "demo")
    before = _counts(fp.db)
    assert before["payment_events"] > 0 and before["recon_mismatches"] > 0
    with fp.db.engine.connect() as conn:
        cancelled = conn.execute(text(
            "SELECT code, cancelled_at FROM payment_references WHERE state = 'cancelled'"
        )).all()
    assert cancelled and all(at is not None for _, at in cancelled)
    scopes = _scopes(fp.db)
    assert any(scope for _, _, scope in scopes)  # bank pushes are scoped to their channel

    fp.db.downgrade("0004")
    assert _counts(fp.db) == before
    fp.db.upgrade()
    assert _counts(fp.db) == before
    assert _scopes(fp.db) == scopes  # 0005 gives old bank events their channel scope
    with fp.db.engine.connect() as conn:
        assert conn.execute(text(
            "SELECT code, cancelled_at FROM payment_references WHERE state = 'cancelled'"
        )).all() == cancelled
        if fp.db.dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    assert fp.audit.verify().ok
    fp.close()


def test_0013_gives_events_without_an_account_their_references(empty_url: str) -> None:
    """Recorded without a channel, or through a gateway channel serving no one account, a
    callback now stores its reference's account (and is not flagged for it); through a
    bank channel, the channel's. 0013 gives the events stored before it theirs, and its
    downgrade takes exactly those away again."""
    from datetime import UTC, datetime

    from feepay.api import FeePay
    from feepay.demo_data import seed
    from feepay.models import PaymentEvent, PaymentStatus

    fp = FeePay.open(empty_url)
    demo = seed(fp)
    own, other = demo.accounts[demo.department], demo.accounts[demo.communes[0]]
    vnp = fp.channels.add("vnp", "vnpay", secrets={"hash_secret": "s"})
    hook = fp.channels.add("hook", "bankhook", secrets={"webhook_secret": "s"},
                           account_id=other)
    ref = fp.references.issue("HS-0013", demo.department, ["P-CT-02"])
    recorded = [fp.payments.record(PaymentEvent(
        provider=provider, provider_txn_id=txn, reference=code, amount=10_000,
        paid_at=datetime(2025, 12, 1, 2, tzinfo=UTC), status=PaymentStatus.SUCCESS),
        channel=channel)
        for txn, code, provider, channel in (
            ("T1", ref.code, "sepay", None), ("T2", None, "sepay", None),
            ("T3", ref.code, "vnpay", vnp), ("T4", ref.code, "bankhook", hook))]
    assert [("account_mismatch" in {f.value for f in r.flags}) for r in recorded] == [
        False, False, False, True]                  # only the bank channel's account counts

    def accounts() -> dict[str, int | None]:
        with fp.db.engine.connect() as conn:
            return dict(conn.execute(text(
                "SELECT provider_txn_id, account_id FROM payment_events")).tuples().all())

    now = {"T1": own, "T2": None, "T3": own, "T4": other}   # T2 names no reference
    assert accounts() == now
    fp.db.downgrade("0012")
    assert accounts() == {"T1": None, "T2": None, "T3": None, "T4": other}
    fp.db.upgrade()
    assert accounts() == now
    fp.close()


def test_0014_stops_on_two_providers_batches_under_one_id(empty_url: str) -> None:
    """0014 makes a settlement batch id unique across providers. A database that already
    holds two providers' batches under one id is not upgraded: the upgrade names the id
    and changes nothing; once a person keeps one batch, it goes through."""
    from datetime import date

    from feepay.api import FeePay
    from feepay.demo_data import seed
    from feepay.models import SettlementBatch, SettlementFile, SettlementTxn

    fp = FeePay.open(empty_url)
    demo = seed(fp)
    txn = SettlementTxn(line_no=1, provider_txn_id="T1", gross=5_000, fee=100, net=4_900,
                        batch_id="LOT-0014")
    fp.statements.import_settlement(SettlementFile(source="v.csv", format="vnpay", batches=(
        SettlementBatch(batch_id="LOT-0014", provider="vnpay", settled_on=date(2025, 12, 1),
                        net_total=4_900, transactions=(txn,)),)),
        demo.accounts[demo.department], file_name="v.csv", file_sha256="v" * 64, file_size=1)
    fp.db.downgrade("0013")
    copy = ("INSERT INTO settlement_batches (import_id, account_id, provider, batch_id, "
            "settled_on, gross_total, fee_total, net_total, txn_count) SELECT import_id, "
            "account_id, 'momo', batch_id, settled_on, gross_total, fee_total, net_total, "
            "txn_count FROM settlement_batches")
    with fp.db.engine.begin() as conn:
        conn.execute(text(copy))
    with pytest.raises(RuntimeError, match="share the id.s. LOT-0014"):
        fp.db.upgrade()
    assert fp.db.current_revision() == "0013"
    with fp.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM settlement_batches WHERE provider = 'momo'"))
    fp.db.upgrade("0014")
    assert fp.db.current_revision() == "0014"
    with (pytest.raises(IntegrityError, match="uq_settlement_batches_batch_id|UNIQUE"),
          fp.db.engine.begin() as conn):
        conn.execute(text(copy))
    fp.close()
