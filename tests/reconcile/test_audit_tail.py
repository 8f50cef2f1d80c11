"""The audit chain's end: entries cut off the end of the log are noticed too."""

from __future__ import annotations

import json
from datetime import date, datetime, time

from click.testing import CliRunner
from sqlalchemy import delete, func, select

from feepay.money import VN_TZ
from feepay.storage.tables import AuditRow
from reconcile.resolution import Resolutions
from webapp.cli import main

D1 = date(2025, 12, 1)


def _cut_last(fp, n: int) -> None:  # noqa: ANN001
    with fp.db.session() as s:
        last = s.scalar(select(func.max(AuditRow.id)))
        s.execute(delete(AuditRow).where(AuditRow.id > last - n))


def _unknown_resolved(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(500, "LAI TIEN GUI", datetime.combine(D1, time(9), VN_TZ))])
    world.run(D1)
    res = Resolutions(fp)
    (m,) = res.list(category="unknown_reference")
    res.write_off(m.id, reason="lãi ngân hàng", actor="kbnn.demo")


def test_a_resolution_whose_entry_was_cut_off_breaks_the_chain(fp, world) -> None:  # noqa: ANN001
    _unknown_resolved(fp, world)
    assert fp.audit.verify().ok
    _cut_last(fp, 1)  # the write-off's entry: what is left still links up
    rep = fp.audit.verify()
    assert not rep.ok and rep.first_broken_id is None
    assert "resolution" in rep.reason and "removed from its end" in rep.reason


def test_an_anchor_must_still_be_in_the_chain(fp, world) -> None:  # noqa: ANN001
    world.statement(D1, [(500, "LAI TIEN GUI", datetime.combine(D1, time(9), VN_TZ))])
    world.run(D1)
    head = fp.audit.verify().head
    world.run(D1)  # one more entry (the re-run)
    later = fp.audit.verify()
    assert later.ok and later.head != head and fp.audit.verify(anchor=head).ok
    _cut_last(fp, 1)
    assert fp.audit.verify(anchor=head).ok  # the anchor is still there
    rep = fp.audit.verify(anchor=later.head)
    assert not rep.ok and rep.head == head and "not in the chain" in rep.reason


def test_cli_prints_the_head_and_takes_an_anchor(fp, world, db_url) -> None:  # noqa: ANN001
    world.statement(D1, [(500, "LAI TIEN GUI", datetime.combine(D1, time(9), VN_TZ))])
    world.run(D1)

    def verify(*args: str):  # noqa: ANN202
        return CliRunner().invoke(main, ["--db", db_url, "audit", "verify", *args])

    ok = verify("--json")
    assert ok.exit_code == 0, ok.output
    head = json.loads(ok.stdout)["head"]
    assert head and f"head {head}" in verify().stdout
    world.run(D1)
    later = json.loads(verify("--json").stdout)["head"]
    _cut_last(fp, 1)
    assert verify("--anchor", head).exit_code == 0
    broken = verify("--anchor", later.upper())
    assert broken.exit_code == 1 and "BROKEN at its end" in broken.output
