"""Golden scenarios: one per rule, one per mismatch category, and day-boundary cases.

Each directory under ``scenarios/`` holds ``scenario.json`` (the inputs of one or more
engine runs, with what the scenario is about in ``expect``) and ``expected.json`` (the
full result of each run). See :mod:`reconcile.testing` (``reconcile/testing.py``) for
the notation. A missing ``expected.json`` fails; ``FEEPAY_REGEN_GOLDEN=1`` writes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconcile.engine import reconcile_day
from reconcile.testing import Symbols, build_input, render

REGEN = os.environ.get("FEEPAY_REGEN_GOLDEN") == "1"
ROOT = Path(__file__).parent / "scenarios"


def scenarios() -> list[Path]:
    return sorted(p for p in ROOT.iterdir() if (p / "scenario.json").exists())


def _runs(spec: dict) -> list[dict]:
    return spec.get("runs", [spec])


def _names(spec: dict) -> set[str]:
    import re

    return set(re.findall(r"@([A-Z][0-9]*)", json.dumps(spec)))


@pytest.mark.parametrize("case", scenarios(), ids=lambda p: p.name)
def test_scenario(case: Path) -> None:
    spec = json.loads((case / "scenario.json").read_text(encoding="utf-8"))
    symbols = Symbols(_names(spec))
    results = []
    for run in _runs(spec):
        result = reconcile_day(build_input(run))
        assert result.balanced
        rendered = render(result, symbols)
        _check_expectations(run.get("expect", {}), rendered)
        results.append(rendered)
    golden = case / "expected.json"
    text = json.dumps(results, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    if REGEN:
        golden.write_text(text, encoding="utf-8")
    elif not golden.exists():
        pytest.fail(f"{case.name}: {golden} is missing; run with FEEPAY_REGEN_GOLDEN=1 to "
                    "write it, then review it before committing", pytrace=False)
    assert json.loads(golden.read_text(encoding="utf-8")) == results, (
        f"{case.name}: result differs from expected.json "
        "(FEEPAY_REGEN_GOLDEN=1 to rewrite, then review the diff)")


def _check_expectations(expect: dict, rendered: dict) -> None:
    """The scenario's own statement of what it shows, checked besides the golden."""
    rules = sorted(m["rule"] for m in rendered["matches"])
    categories = sorted(m["category"] for m in rendered["mismatches"])
    if "rules" in expect:
        assert rules == sorted(expect["rules"]), rules
    if "categories" in expect:
        assert categories == sorted(expect["categories"]), categories
    for code, state in expect.get("states", {}).items():
        assert {u["code"]: u["state"] for u in rendered["updates"]}.get(code) == state
    if "suggested" in expect:
        assert [m.get("suggested", []) for m in rendered["mismatches"]
                if m.get("suggested")] == expect["suggested"]
    if "clears" in expect:
        assert rendered["clears"] == expect["clears"]
    if "pending_events" in expect:
        assert rendered["pending_events"] == expect["pending_events"]


def test_missing_golden_fails(tmp_path: Path) -> None:
    """A deleted expected.json must not pass by being rewritten behind the reviewer's back."""
    if REGEN:
        pytest.skip("FEEPAY_REGEN_GOLDEN=1 writes missing golden files on purpose")
    case = tmp_path / "cat_overpaid"
    case.mkdir()
    (case / "scenario.json").write_bytes((ROOT / case.name / "scenario.json").read_bytes())
    with pytest.raises(pytest.fail.Exception, match="expected.json is missing.*"
                                                    "FEEPAY_REGEN_GOLDEN=1"):
        test_scenario(case)
    assert not (case / "expected.json").exists()
