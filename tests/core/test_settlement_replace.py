"""`feepay statements import --replace-batches REASON`: a gateway's corrected settlement
file replaces the batches it changes, the old version kept in the audit log; without the
option it is refused and nothing changes. Real databases, the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from feepay.storage.tables_statements import (
    SettlementBatchRow,
    SettlementTxnRow,
    StatementImportRow,
    StatementLineRow,
)
from webapp.cli import main

DATA = Path(__file__).parents[1] / "adapters" / "statements" / "data"
VNPAY_CSV = DATA / "vnpay" / "vnpay_settlement_2025-11-02_03.csv"
VCB_CSV = DATA / "vietcombank" / "vcb_2025-11-01_03.csv"
REASON = "VNPAY sent a corrected file for 02/11 (ticket 4711)"


@pytest.fixture
def account(fp) -> int:  # noqa: ANN001
    """The Vietcombank collection account the VNPAY sample pays into."""
    fp.units.add("40", "Tỉnh Nghệ An (thử nghiệm)", "province")
    return fp.accounts.register("40", "970436", "9990001234567", "DON VI THU PHI VCB").id


def cli(db_url: str, *args: str):  # noqa: ANN201
    return CliRunner().invoke(main, ["--db", db_url, "statements", *args])


def counts(fp) -> dict[str, int]:  # noqa: ANN001
    with fp.db.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in (
            StatementLineRow, StatementImportRow, SettlementBatchRow, SettlementTxnRow)}


def corrected(tmp: Path) -> Path:
    """The VNPAY sample with the first payment's amount corrected (50.000 -> 60.000)."""
    with VNPAY_CSV.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    row = next(r for r in rows if r and r[0] == "1")
    row[6], row[8] = "60.000", "58.900"
    rows.pop()  # the file total no longer holds
    with (tmp / "vnpay-corrected.csv").open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return tmp / "vnpay-corrected.csv"


def batch(fp, batch_id: str) -> tuple[int, int, int]:  # noqa: ANN001
    with fp.db.session() as s:
        b = s.scalars(select(SettlementBatchRow).where(SettlementBatchRow.batch_id == batch_id)
                      ).one()
        return b.import_id, b.gross_total, b.net_total


def test_cli_replaces_a_corrected_batch_only_when_asked(fp, account, db_url,  # noqa: ANN001
                                                        tmp_path) -> None:
    first = cli(db_url, "import", str(VNPAY_CSV), "--account", str(account), "--json")
    assert first.exit_code == 0, first.output
    before, stored = counts(fp), batch(fp, "vnpay-20251102")
    fixed = corrected(tmp_path)

    refused = cli(db_url, "import", str(fixed), "--account", str(account))
    assert refused.exit_code == 2
    assert "batch vnpay-20251102 was already imported with net" in refused.stderr
    assert "--replace-batches REASON" in refused.stderr
    assert counts(fp) == before and batch(fp, "vnpay-20251102") == stored

    res = cli(db_url, "import", str(fixed), "--account", str(account), "--actor", "ke.toan",
              "--replace-batches", REASON)
    assert res.exit_code == 0, res.output
    assert "8 transactions: 4 new, 4 already stored" in res.stdout
    assert "replaced 1 stored batch(es): vnpay-20251102 (old version in the audit log)" \
        in res.stdout
    import_id = fp.statements.list_imports(account)[0]["id"]
    assert batch(fp, "vnpay-20251102") == (import_id, 565_000, 556_200)
    assert batch(fp, "vnpay-20251103")[0] == stored[0]  # unchanged: not replaced
    assert counts(fp)["settlement_transactions"] == before["settlement_transactions"]

    (entry,) = [e for e in fp.audit.entries("settlement_batch")
                if e["action"] == "statements.replace_batch"]
    assert (entry["actor"], entry["reason"]) == ("ke.toan", REASON)
    old = entry["details"]["old"]
    assert (old["import_id"], old["net_total"], len(old["transactions"])) == (
        stored[0], 546_200, 4)
    assert {t["provider_txn_id"] for t in old["transactions"]} == {
        "14280110", "14646604", "14053827", "14214916"}

    again = cli(db_url, "import", str(fixed), "--account", str(account),
                "--replace-batches", REASON, "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)  # the same file again: nothing to replace
    assert (data["replaced_batches"], data["new"], data["duplicates"]) == ([], 0, 8)
    assert batch(fp, "vnpay-20251102")[0] == import_id


@pytest.mark.parametrize(("path", "reason", "needle"), [
    (VCB_CSV, REASON, "--replace-batches is for gateway settlement files"),
    (VNPAY_CSV, "   ", "needs a reason"),
])
def test_cli_replace_option_errors_exit_2(fp, account, db_url, path: Path,  # noqa: ANN001
                                          reason: str, needle: str) -> None:
    res = cli(db_url, "import", str(path), "--account", str(account),
              "--replace-batches", reason)
    assert res.exit_code == 2 and needle in res.stderr
    assert counts(fp) == dict.fromkeys(counts(fp), 0)
