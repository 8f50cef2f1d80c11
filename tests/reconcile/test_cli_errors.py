"""Refused input on the real `feepay` console script: exit 2, one clear line on stderr, no
traceback, nothing written — `demo` (dossiers, a database that already holds data) and
`scheduler` (the nightly time); and `scheduler` logs its nights at INFO by default."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, table

from feepay.api import FeePay
from feepay.config import Settings
from feepay.demo_data import seed
from feepay.storage.engine import Database
from reconcile.scheduler import check_at

SCRIPT = shutil.which("feepay", path=os.path.dirname(sys.executable)) or "feepay"
CLEAN_ENV = ("FEEPAY_DATABASE_URL", "FEEPAY_LOG_LEVEL", "FEEPAY_RECONCILE_AT")


def feepay(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``feepay ARGS`` in a child process (FEEPAY_SECRET_KEYS comes from conftest)."""
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    return subprocess.run([SCRIPT, *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, **env}, timeout=300)


def counts(url: str) -> dict[str, int]:
    """Rows in every table of the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: conn.scalar(select(func.count()).select_from(table(name)))
                    for name in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def refused(out: subprocess.CompletedProcess[str], field: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {field}: "), line
    return line


@pytest.fixture
def seeded_url(sqlite_url: str, sealer) -> str:  # noqa: ANN001
    """A SQLite database holding the demo province (units, accounts, fee items)."""
    handle = FeePay(Database(sqlite_url), sealer, Settings.from_env(sqlite_url))
    seed(handle)
    handle.close()
    return sqlite_url


# --------------------------------------------------------------------------- demo


@pytest.mark.parametrize("dossiers", ["5", "-3", "14"])
def test_demo_refuses_too_few_dossiers(tmp_path: Path, dossiers: str) -> None:
    out = feepay(tmp_path, "demo", "--dir", "d", "--dossiers", dossiers)
    line = refused(out, "dossiers")
    assert f"{dossiers} is too few" in line and "at least 15" in line
    assert list(tmp_path.iterdir()) == []           # no directory, no database


def test_demo_too_few_dossiers_as_json(tmp_path: Path) -> None:
    out = feepay(tmp_path, "demo", "--dossiers", "5", "--json")
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    error = json.loads(out.stderr)
    assert error["error"] == "ValidationError" and error["field"] == "dossiers"
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_a_database_that_holds_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = feepay(tmp_path, "--db", url, "demo", "--dir", "first", "--dossiers", "15",
                   "--json")
    assert first.returncode == 0, first.stderr
    before = counts(url)
    assert before["payment_references"] > 0
    # the way the reviewer hit it: FEEPAY_DATABASE_URL left set from the first demo
    again = feepay(tmp_path, "demo", "--dir", "second", FEEPAY_DATABASE_URL=url)
    line = refused(again, "db")
    assert f"{url} already holds data ({before['payment_references']} references" in line
    assert "empty database" in line and "--db" in line and "FEEPAY_DATABASE_URL" in line
    assert counts(url) == before
    assert not (tmp_path / "second").exists()


def test_demo_refuses_a_database_with_a_province_only(tmp_path: Path, seeded_url: str) -> None:
    before = counts(seeded_url)
    line = refused(feepay(tmp_path, "--db", seeded_url, "demo", "--dir", "d"), "db")
    assert "accounts" in line and "units" in line and "references" not in line
    assert counts(seeded_url) == before and not (tmp_path / "d").exists()


def test_a_refused_demo_does_not_even_migrate(tmp_path: Path) -> None:
    """A database one migration behind, holding a unit: refused, and left at its
    revision (FEEPAY_DATABASE_URL may point at production)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    db.upgrade("0007")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO units (code, name, kind, created_at) "
                             "VALUES ('40', 'Nghệ An', 'province', '2025-07-01 00:00:00')")
    refused(feepay(tmp_path, "--db", url, "demo", "--dir", "d"), "db")
    assert db.current_revision() == "0007"
    db.dispose()


def test_demo_help_says_where_the_database_goes(tmp_path: Path) -> None:
    out = feepay(tmp_path, "demo", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "fresh SQLite database (feepay.db)" in text and "must be empty" in text
    assert "at least 15" in text


# --------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("args, env", [
    (["--at", "25:00"], {}),
    (["--at", "6:00"], {}),
    (["--at", "06:60"], {}),
    (["--at", "06:00:30"], {}),
    ([], {"FEEPAY_RECONCILE_AT": "noon"}),
    ([], {"FEEPAY_RECONCILE_AT": "24:00"}),
], ids=["25:00", "6:00", "06:60", "seconds", "env-noon", "env-24:00"])
def test_scheduler_refuses_a_bad_time(tmp_path: Path, seeded_url: str, args: list[str],
                                      env: dict[str, str]) -> None:
    before = counts(seeded_url)
    out = feepay(tmp_path, "--db", seeded_url, "scheduler", *args, **env)
    # the scheduler would run forever (timeout) if the time were accepted
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "ScheduleValueError" not in out.stderr
    error = out.stderr.strip().splitlines()[-1]
    bad = args[1] if args else env["FEEPAY_RECONCILE_AT"]
    assert error == (f"error: at: '{bad}' is not a time of day: write HH:MM, 00:00 to 23:59 "
                     "(from --at or FEEPAY_RECONCILE_AT)")
    assert counts(seeded_url) == before and before["recon_runs"] == 0


def test_a_bad_time_is_refused_before_the_database_is_opened(tmp_path: Path) -> None:
    fresh = tmp_path / "never.db"
    out = feepay(tmp_path, "--db", f"sqlite:///{fresh}", "scheduler", "--at", "6:00")
    assert out.returncode == 2 and "error: at: '6:00'" in out.stderr
    assert "feepay scheduler:" not in out.stderr and not fresh.exists()


def test_check_at() -> None:
    for good in ("00:00", "06:00", "23:59"):
        assert check_at(good) == good
    for bad in ("", "6:00", "24:00", "12:5", "12:60", " 06:00", "06:00\n", "0600"):
        with pytest.raises(ValueError, match="not a time of day"):
            check_at(bad)


def test_scheduler_logs_its_nights_at_info_by_default(tmp_path: Path, seeded_url: str) -> None:
    accounts = counts(seeded_url)["collection_accounts"]
    out = feepay(tmp_path, "--db", seeded_url, "scheduler", "--once", "--day", "2025-12-01",
                 "--catch-up", "0")
    assert out.returncode == 0, out.stderr
    assert (f"INFO reconcile.scheduler: nightly reconciliation up to 2025-12-01: {accounts} "
            "account-days run, 0 skipped, 0 with problems") in out.stderr
    assert out.stderr.count("INFO reconcile.runner: ") == accounts   # each run's outcome
    assert "alembic" not in out.stderr                  # libraries stay at WARNING
    # FEEPAY_LOG_LEVEL still wins over the scheduler's default
    quiet = feepay(tmp_path, "--db", seeded_url, "scheduler", "--once", "--day",
                   "2025-12-01", "--catch-up", "0", FEEPAY_LOG_LEVEL="WARNING")
    assert quiet.returncode == 0 and " INFO " not in quiet.stderr
    # other commands keep WARNING
    other = feepay(tmp_path, "--db", seeded_url, "reconcile", "--day", "2025-12-02")
    assert other.returncode == 0, other.stderr
    assert " INFO " not in other.stderr
    # ... unless asked with -v
    verbose = feepay(tmp_path, "--db", seeded_url, "-v", "reconcile", "--day", "2025-12-03")
    assert verbose.returncode == 0 and "INFO reconcile.runner: " in verbose.stderr
