"""`feepay demo`: the whole story on a fresh SQLite database, printed for people."""

from __future__ import annotations

from pathlib import Path

import click

from feepay.clikit import emit
from feepay.demo import prepare
from feepay.money import format_vnd


def run(out_dir: Path, *, seed_value: int, dossiers: int, as_json: bool,
        db_url: str | None = None) -> dict[str, object]:
    """Set up the demo province, issue references, and print a summary."""
    setup = prepare(out_dir, seed_value=seed_value, dossiers=dossiers, db_url=db_url)
    refs = setup.references
    summary: dict[str, object] = {
        "database": setup.fp.db.engine.url.render_as_string(hide_password=True),
        "province": setup.province.province,
        "units_with_accounts": sorted(setup.province.accounts),
        "fee_codes": setup.province.fee_codes,
        "references_issued": len(refs),
        "amount_due_total": sum(r.amount_due for r in refs),
        "examples": [{"code": r.code, "display_code": r.display_code,
                      "dossier": r.dossier_code, "unit": r.competent_unit,
                      "amount_due": r.amount_due, "vietqr": r.vietqr} for r in refs[:3]],
        "qr_dir": str(out_dir / "qr"),
    }
    emit(as_json, summary, lambda: _text(summary))
    setup.fp.close()
    return summary


def _text(s: dict[str, object]) -> str:
    out = [click.style("feepay demo", bold=True),
           f"  cơ sở dữ liệu / database: {s['database']}",
           f"  tỉnh / province {s['province']}: {len(s['units_with_accounts'])} đơn vị có "
           f"tài khoản thu, {len(s['fee_codes'])} khoản phí/lệ phí",
           f"  đã phát hành / issued: {s['references_issued']} mã thanh toán, tổng "
           f"{format_vnd(s['amount_due_total'])}", ""]
    for e in s["examples"]:
        out += [f"  {e['display_code']}  hồ sơ {e['dossier']}  đơn vị {e['unit']}  "
                f"{format_vnd(e['amount_due'])}", f"    VietQR: {e['vietqr']}"]
    out += ["", f"  QR (SVG, PNG): {s['qr_dir']}"]
    return "\n".join(out)
