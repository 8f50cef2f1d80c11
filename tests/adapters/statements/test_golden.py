"""Golden files: every sample parses to its committed JSON, and only its adapter claims it.

``FEEPAY_REGEN_GOLDEN=1 pytest tests/adapters/statements`` rewrites the ``.json`` files
(review the diff before committing); otherwise a difference fails with a unified diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from adapters.statements import Source, adapters

DATA = Path(__file__).parent / "data"
REGEN = os.environ.get("FEEPAY_REGEN_GOLDEN") == "1"
SAMPLES = sorted(p for p in DATA.rglob("*")
                 if p.is_file() and p.suffix not in (".json", ".md"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_every_builtin_format_has_a_sample() -> None:
    assert {p.parent.name for p in SAMPLES} == set(adapters())


@pytest.mark.parametrize("sample", SAMPLES, ids=_id)
def test_identified_by_its_adapter_and_no_other(sample: Path) -> None:
    source = Source(sample)
    try:
        claimed = sorted(name for name, a in adapters().items() if a.safe_identify(source))
    finally:
        source.close()
    assert claimed == [sample.parent.name]


@pytest.mark.parametrize("sample", SAMPLES, ids=_id)
def test_parses_to_golden(sample: Path) -> None:
    parsed = adapters()[sample.parent.name].parse(sample)
    got = parsed.model_dump_json(indent=2) + "\n"
    golden = sample.with_name(sample.name + ".json")
    if REGEN:
        golden.write_text(got, encoding="utf-8")
    assert golden.exists(), f"no golden for {sample.name}: run with FEEPAY_REGEN_GOLDEN=1"
    expected = golden.read_text(encoding="utf-8")
    if got != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                            str(golden), "parsed now", n=2))
        pytest.fail(f"{sample.name} no longer parses to its golden file:\n{diff[:6000]}")


def test_golden_balances_add_up() -> None:
    """Sanity of the samples themselves: where both balances exist they reconcile."""
    for sample in SAMPLES:
        parsed = adapters()[sample.parent.name].parse(sample)
        if getattr(parsed, "opening_balance", None) is None or parsed.closing_balance is None:
            continue
        moved = sum(ln.amount if ln.direction == "credit" else -ln.amount
                    for ln in parsed.lines)
        assert parsed.opening_balance + moved == parsed.closing_balance, sample.name
