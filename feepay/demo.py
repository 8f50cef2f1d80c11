"""The core part of `feepay demo`: a demo province with references and their VietQR.

Later stages (callbacks, statements, reconciliation) are driven from the top-level
command in ``webapp/cli.py``, which may import every package.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from feepay.api import FeePay
from feepay.demo_data import DemoProvince, seed
from feepay.models import PaymentReference
from feepay.reference import generate

#: what a dossier asks for: (competent unit kind, fee codes)
BASKETS = (
    ("department", ["P-CT-01", "P-CT-02"]),
    ("department", ["P-TD-01"]),
    ("commune", ["LP-HT-01"]),
    ("commune", ["LP-HT-02", "LP-HT-02"]),
    ("commune", ["LP-DD-01", "P-CT-01"]),
)


@dataclass
class DemoSetup:
    fp: FeePay
    province: DemoProvince
    references: list[PaymentReference]
    out_dir: Path


def prepare(out_dir: Path, *, seed_value: int = 0, dossiers: int = 20,
            db_url: str | None = None) -> DemoSetup:
    """Fresh demo database in ``out_dir`` (unless ``db_url``), seeded, references issued."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        for leftover in out_dir.glob("feepay.db*"):
            leftover.unlink()
        db_url = f"sqlite:///{out_dir / 'feepay.db'}"
    fp = FeePay.open(db_url)
    province = seed(fp, seed_value)
    rng = random.Random(seed_value)
    code_rng = random.Random(f"codes-{seed_value}")
    fp.references.generate_code = lambda: generate(code_rng)
    refs = fp.references.issue_many([_request(province, rng, i) for i in range(dossiers)])
    qr_dir = out_dir / "qr"
    shutil.rmtree(qr_dir, ignore_errors=True)
    qr_dir.mkdir()
    for r in refs[:5]:
        (qr_dir / f"{r.code}.svg").write_text(r.qr_svg(), encoding="utf-8")
        (qr_dir / f"{r.code}.png").write_bytes(r.qr_png())
    return DemoSetup(fp, province, refs, out_dir)


def _request(province: DemoProvince, rng: random.Random, i: int):  # noqa: ANN202
    from feepay.references import IssueRequest

    kind, items = rng.choice(BASKETS)
    unit = province.department if kind == "department" else rng.choice(province.communes)
    receiving = rng.choice(province.communes)
    return IssueRequest(f"000.00.{province.province}.H-{i + 1:06d}", unit, items, receiving)
