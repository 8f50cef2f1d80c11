"""`feepay demo`: the README's main job runs on a fresh SQLite file, deterministically."""

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


def test_demo_runs_and_is_deterministic(tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--dir", "a", "--json", "--seed", "7", "--dossiers", "12")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["references_issued"] == 12
    for ex in out["examples"]:
        assert reference.is_valid(ex["code"])
        assert parse_payload(ex["vietqr"])["62.08"] == ex["code"]
    assert len(list((tmp_path / "a" / "qr").glob("*.png"))) >= 3
    second = run_demo(tmp_path, "--dir", "b", "--json", "--seed", "7", "--dossiers", "12")
    again = json.loads(second.stdout)
    assert [e["code"] for e in again["examples"]] == [e["code"] for e in out["examples"]]
    human = run_demo(tmp_path, "--dir", "c")
    assert human.returncode == 0 and "VietQR" in human.stdout
