"""The core part of `feepay demo`: a fresh demo database and the references' QR images.

The day itself (payments, callbacks, statements, reconciliation) is played by
``reconcile.demo``; the top-level command in ``webapp`` joins the two, since only the top
may import every package.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from feepay.api import FeePay
from feepay.exceptions import ValidationError
from feepay.models import PaymentReference
from feepay.reference import generate


def open_fresh(out_dir: Path, *, seed_value: int, db_url: str | None = None) -> FeePay:
    """A FeePay on a new SQLite file in ``out_dir`` (or on ``db_url`` as given).

    Reference codes come from a generator seeded with ``seed_value`` so the same seed
    prints the same codes.

    Raises:
        ValidationError: (field ``db``) ``db_url`` names a database that already holds
            units, accounts or references — the demo only plays on an empty one, and
            nothing is written (``out_dir`` is not even created).
    """
    if db_url is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for leftover in out_dir.glob("feepay.db*"):
            leftover.unlink()
        db_url = f"sqlite:///{out_dir / 'feepay.db'}"
        fp = FeePay.open(db_url)
    else:
        fp = FeePay.open(db_url, migrate=False)  # looked at before anything is written
        try:
            if fp.db.is_initialised():
                _require_empty(fp, out_dir)
        except ValidationError:
            fp.close()
            raise
        fp.db.upgrade()
        out_dir.mkdir(parents=True, exist_ok=True)
    code_rng = random.Random(f"codes-{seed_value}")
    fp.references.generate_code = lambda: generate(code_rng)
    return fp


def _require_empty(fp: FeePay, out_dir: Path) -> None:
    from sqlalchemy import func, select

    from feepay.storage.tables import AccountRow, ReferenceRow, UnitRow

    with fp.db.session() as s:
        held = {name: s.scalar(select(func.count()).select_from(row))
                for name, row in (("references", ReferenceRow), ("accounts", AccountRow),
                                  ("units", UnitRow))}
    if any(held.values()):
        what = ", ".join(f"{n} {name}" for name, n in held.items() if n)
        url = fp.db.engine.url.render_as_string(hide_password=True)
        raise ValidationError(
            f"{url} already holds data ({what}); the demo plays only on an empty database: "
            f"leave out --db and FEEPAY_DATABASE_URL to use a fresh {out_dir / 'feepay.db'} "
            "(choose the directory with --dir), or pass --db sqlite:///<new file>",
            field="db")


def write_qr_images(refs: list[PaymentReference], qr_dir: Path) -> Path:
    """SVG and PNG of each reference's VietQR into ``qr_dir`` (emptied first)."""
    shutil.rmtree(qr_dir, ignore_errors=True)
    qr_dir.mkdir(parents=True)
    for r in refs:
        (qr_dir / f"{r.code}.svg").write_text(r.qr_svg(), encoding="utf-8")
        (qr_dir / f"{r.code}.png").write_bytes(r.qr_png())
    return qr_dir
