"""The demo day: every mismatch category shows up, the day balances, files and reports are
written, and the same seed tells the same story."""

from __future__ import annotations

from pathlib import Path

import pytest

from feepay.api import FeePay
from feepay.exceptions import ValidationError
from reconcile.demo import format_summary, run_demo_day
from reconcile.models import Category


def test_demo_day(fp, tmp_path) -> None:  # noqa: ANN001
    s = run_demo_day(fp, seed=3, dossiers=20, out_dir=tmp_path)
    r = s["reconciliation"]
    assert r["balanced"] and r["statement_credits"] == r["matched"] + r["held"]
    assert set(r["mismatches"]) == {c.value for c in Category}
    assert {"exact", "gateway"} <= set(r["by_rule"])
    unknown = r["mismatches"]["unknown_reference"]["example"]
    assert unknown["suggested"] and "memo" in unknown          # the typo'd code
    cb = s["callbacks"]
    assert cb["forged_refused"] and cb["lost"] == 2 and cb["duplicated"] == 1
    assert s["imports"]["statement"]["format"] == "vietinbank"
    assert s["imports"]["settlement"]["batches"] == 2
    for path in (s["files"]["statement"], s["files"]["settlement"], s["reports"]["xlsx"]):
        assert Path(path).exists()
    text = format_summary(s)
    assert "cân khớp / balanced" in text and "Nộp thừa" in text and "gợi" not in text


def _shape(s: dict) -> dict:
    r = s["reconciliation"]
    return {"issued": s["references_issued"], "amount": s["amount_issued"],
            "credits": r["statement_credits"], "matched": r["matched"], "held": r["held"],
            "rules": r["by_rule"],
            "mismatches": {k: (v["count"], v["amount"]) for k, v in r["mismatches"].items()}}


def test_same_seed_same_day(sqlite_url, sealer, tmp_path) -> None:  # noqa: ANN001
    from feepay.config import Settings
    from feepay.storage.engine import Database

    shapes = []
    for i in range(2):
        url = f"sqlite:///{tmp_path}/demo{i}.db"
        Database(url).upgrade()
        handle = FeePay(Database(url), sealer, Settings.from_env(url))
        shapes.append(_shape(run_demo_day(handle, seed=7, dossiers=16,
                                          out_dir=tmp_path / f"out{i}")))
        handle.close()
    assert shapes[0] == shapes[1]


def test_too_few_dossiers(fp, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError):
        run_demo_day(fp, seed=0, dossiers=5, out_dir=tmp_path)
