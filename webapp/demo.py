"""`feepay demo`: one realistic day for a demo province on a fresh SQLite database.

References are issued, citizens pay (VietQR with mangled memos, VNPAY), callbacks arrive
(some lost, some duplicated, one forged), a bank statement and a VNPAY settlement file are
imported, the nightly reconciliation runs and the reports are written; then a summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from feepay.clikit import emit
from feepay.demo import open_fresh, write_qr_images
from feepay.money import format_vnd
from reconcile.demo import format_summary, run_demo_day

EXAMPLES = 3


def run(out_dir: Path, *, seed_value: int, dossiers: int, as_json: bool,
        db_url: str | None = None) -> dict[str, object]:
    """Play the demo day and print its summary (JSON with ``--json``)."""
    fp = open_fresh(out_dir, seed_value=seed_value, db_url=db_url)
    try:
        summary = run_demo_day(fp, seed=seed_value, dossiers=dossiers, out_dir=out_dir)
        refs = [fp.references.get(c) for c in _first_codes(fp, EXAMPLES)]
        qr_dir = write_qr_images(refs, out_dir / "qr")
    finally:
        fp.close()
    summary["examples"] = [{"code": r.code, "display_code": r.display_code,
                            "dossier": r.dossier_code, "unit": r.competent_unit,
                            "amount_due": r.amount_due, "state": r.state.value,
                            "vietqr": r.vietqr} for r in refs]
    summary["qr_dir"] = str(qr_dir)
    emit(as_json, summary, lambda: _text(summary))
    return summary


def _first_codes(fp, n: int) -> list[str]:  # noqa: ANN001
    from sqlalchemy import select

    from feepay.storage.tables import ReferenceRow

    with fp.db.session() as s:
        return list(s.scalars(select(ReferenceRow.code).order_by(ReferenceRow.id).limit(n)))


def _text(s: dict[str, object]) -> str:
    out = [click.style("feepay demo", bold=True), format_summary(s), "",
           "Mã thanh toán mẫu / sample references (VietQR):"]
    for e in s["examples"]:
        out += [f"  {e['display_code']}  hồ sơ {e['dossier']}  đơn vị {e['unit']}  "
                f"{format_vnd(e['amount_due'])}  [{e['state']}]", f"    {e['vietqr']}"]
    out.append(f"  QR (SVG, PNG): {s['qr_dir']}")
    return "\n".join(out)
