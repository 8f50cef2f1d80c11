"""`feepay demo`: the README's main job runs end to end on a fresh SQLite file,
deterministically for a seed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from feepay import reference
from feepay.vietqr import parse_payload


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("feepay", path=os.path.dirname(sys.executable)) or "feepay"
    env = {k: v for k, v in os.environ.items() if k not in ("FEEPAY_DATABASE_URL",
                                                            "FEEPAY_SECRET_KEYS")}
    return subprocess.run([script, "demo", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def test_demo_runs_end_to_end_and_is_deterministic(tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--dir", "a", "--json", "--seed", "7", "--dossiers", "20")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    rec = out["reconciliation"]
    assert rec["balanced"] is True
    assert rec["statement_credits"] == rec["matched"] + rec["held"]
    assert out["callbacks"]["forged_refused"] is True
    assert rec["matches"] > 0 and len(rec["mismatches"]) >= 8
    for ex in out["examples"]:
        assert reference.is_valid(ex["code"])
        assert parse_payload(ex["vietqr"])["62.08"] == ex["code"]
    assert len(list((tmp_path / "a" / "qr").glob("*.png"))) == len(out["examples"])
    assert (tmp_path / out["reports"]["xlsx"]).exists()
    second = run_demo(tmp_path, "--dir", "b", "--json", "--seed", "7", "--dossiers", "20")
    again = json.loads(second.stdout)
    assert [e["code"] for e in again["examples"]] == [e["code"] for e in out["examples"]]
    same = ("balanced", "statement_credits", "matched", "held", "matches", "by_rule",
            "mismatches")
    assert {k: again["reconciliation"][k] for k in same} == {k: rec[k] for k in same}
    human = run_demo(tmp_path, "--dir", "c")
    assert human.returncode == 0, human.stderr
    assert "VietQR" in human.stdout and "Đối soát" in human.stdout
    assert "Traceback" not in human.stderr
