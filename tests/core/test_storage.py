"""Migrations run up from empty and down again on both databases; `init` twice is harmless."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

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
