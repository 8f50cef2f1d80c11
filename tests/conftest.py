"""Shared fixtures: real databases (SQLite always, PostgreSQL when configured), a FeePay.

``db_url`` is parametrised over both databases, so every test that uses it (or ``fp``)
runs twice. PostgreSQL comes from ``FEEPAY_TEST_POSTGRES_URL``; without it the PostgreSQL
variants are skipped with that reason, except under ``CI=true``, where an unset or
unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from feepay.api import FeePay
from feepay.config import Settings
from feepay.crypto import Sealer
from feepay.storage.engine import Database

PG_ENV = "FEEPAY_TEST_POSTGRES_URL"
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def sealer() -> Sealer:
    return Sealer([TEST_KEY])


@pytest.fixture(scope="session", autouse=True)
def _test_keys() -> Iterator[None]:
    """Child processes (CLI runs, servers) get the same key as the test process."""
    old = os.environ.get("FEEPAY_SECRET_KEYS")
    os.environ["FEEPAY_SECRET_KEYS"] = TEST_KEY
    yield
    if old is None:
        os.environ.pop("FEEPAY_SECRET_KEYS", None)
    else:
        os.environ["FEEPAY_SECRET_KEYS"] = old


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "feepay.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL test database, emptied and migrated once per session."""
    url = os.environ.get(PG_ENV)
    if not url:
        if IN_CI:
            pytest.fail(f"CI=true but {PG_ENV} is not set: PostgreSQL tests must run in CI")
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV} "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:  # noqa: BLE001 - any connection failure
        db.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL at {url} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unreachable: {exc}")
    db.upgrade()
    db.dispose()
    return db.url


def _truncate_pg(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' "
            "AND tablename <> 'alembic_version'"))]
        if names:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)
                              + " RESTART IDENTITY CASCADE"))
    db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL: a fresh SQLite file or the emptied PostgreSQL db."""
    if request.param == "sqlite":
        path = tmp_path / "feepay.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_base_url")
    _truncate_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only, for tests that are about SQLite itself."""
    path = tmp_path / "feepay.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def fp(db_url: str, sealer: Sealer) -> Iterator[FeePay]:
    """A FeePay on a fresh database (both dialects)."""
    db = Database(db_url)
    handle = FeePay(db, sealer, Settings.from_env(db_url))
    yield handle
    handle.close()
