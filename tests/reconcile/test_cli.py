"""`feepay reconcile`, `scheduler --once`, `mismatches …` and `report` through click."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date, datetime, time

from click.testing import CliRunner

from feepay.money import VN_TZ
from webapp.cli import main

D1 = date(2025, 12, 1)


def at(hh: int) -> datetime:
    return datetime.combine(D1, time(hh), VN_TZ)


def cli(url: str, *args: str):  # noqa: ANN201
    return CliRunner().invoke(main, ["--db", url, *args], catch_exceptions=False)


def test_reconcile_list_show_resolve_report(fp, world, tmp_path) -> None:  # noqa: ANN001
    a = world.ref()
    world.statement(D1, [(10_000, a.code, at(9)), (1_234_567, "TIEN LA", at(10))])
    url = fp.db.url
    out = cli(url, "reconcile", "--day", "2025-12-01", "--account", str(world.account),
              "--json")
    assert out.exit_code == 0, out.output
    (run,) = json.loads(out.output)["runs"]
    assert run["status"] == "balanced" and run["statement_credits"] == 1_244_567
    human = cli(url, "reconcile", "--day", "2025-12-01", "--account", str(world.account))
    assert "→ balanced" in human.output and "1.244.567 ₫" in human.output
    listed = json.loads(cli(url, "mismatches", "list", "--category", "unknown_reference",
                            "--json").output)["mismatches"]
    (m,) = listed
    shown = cli(url, "mismatches", "show", str(m["id"]))
    assert "Không xác định được mã thanh toán" in shown.output
    done = cli(url, "mismatches", "resolve", str(m["id"]), "--action", "refund_due",
               "--reason", "không rõ người nộp", "--by", "kbnn.demo", "--json")
    assert done.exit_code == 0 and json.loads(done.output)["mismatch"]["status"] == "resolved"
    again = cli(url, "mismatches", "resolve", str(m["id"]), "--action", "write_off",
                "--reason", "x", "--by", "kbnn.demo")
    assert again.exit_code == 2 and "only open" in again.output
    rep = cli(url, "report", "--day", "2025-12-01", "--out", str(tmp_path / "r"))
    assert rep.exit_code == 0 and (tmp_path / "r" / "bao-cao.xlsx").exists()
    rep_json = json.loads(cli(url, "report", "--day", "2025-12-01", "--json").output)
    assert {"summary", "fees", "mismatches", "runs"} <= rep_json.keys()


def test_resolve_links_an_ambiguous_gateway_credit_to_its_batch(fp, world) -> None:  # noqa: ANN001
    a = world.ref()
    world.settlement("VNP-AMB-0002", D1, [("T1", a.code, 10_000, 200)])
    world.statement(D1, [(9_800, "VNPAY TT", at(10)), (9_800, "VNPAY TT", at(11))])
    world.run(D1)
    url = fp.db.url
    first, _ = json.loads(cli(url, "mismatches", "list", "--category", "ambiguous",
                              "--json").output)["mismatches"]
    done = cli(url, "mismatches", "resolve", str(first["id"]), "--action", "link", "--batch",
               "VNP-AMB-0002", "--reason", "VNPAY xác nhận", "--by", "kbnn.demo", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["mismatch"]["linked_batch"] == "VNP-AMB-0002"
    assert out["rerun"]["status"] == "balanced" and out["rerun"]["matched"] == 9_800


def test_scheduler_once_is_exactly_once(fp, world) -> None:  # noqa: ANN001
    url = fp.db.url
    first = json.loads(cli(url, "scheduler", "--once", "--day", "2025-12-01",
                           "--catch-up", "0", "--json").output)["runs"]
    again = json.loads(cli(url, "scheduler", "--once", "--day", "2025-12-01",
                           "--catch-up", "0", "--json").output)["runs"]
    assert {r["status"] for r in first} == {"balanced"}
    assert {r["status"] for r in again} == {"skipped"}
    assert len(first) == len(world.demo.accounts)


def test_unbalanced_run_is_loud(fp, world, monkeypatch, caplog) -> None:  # noqa: ANN001
    """A loader that loses a line (a bug) cannot slip through: status, log, exit 3."""
    import reconcile.runner as runner

    world.statement(D1, [(10_000, "A", at(9)), (20_000, "B", at(10))])
    real = runner.load_day

    def lossy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        loaded = real(*args, **kwargs)
        loaded.input = replace(loaded.input, lines=loaded.input.lines[:1])
        return loaded

    monkeypatch.setattr(runner, "load_day", lossy)
    with caplog.at_level(logging.ERROR, logger="reconcile.runner"):
        out = cli(fp.db.url, "reconcile", "--day", "2025-12-01", "--account",
                  str(world.account))
    assert out.exit_code == 3
    assert "UNBALANCED" in out.output and "SUM CHECK FAILED" in caplog.text
    assert world.recon.runs(day=D1)[0]["status"] == "unbalanced"


def test_bad_input_exits_2(fp) -> None:  # noqa: ANN001
    out = cli(fp.db.url, "reconcile", "--day", "01-12-2025x")
    assert out.exit_code == 2 and "not a date" in out.output
    out = cli(fp.db.url, "reconcile", "--day", "2025-12-02", "--through", "2025-12-01")
    assert out.exit_code == 2
    out = cli(fp.db.url, "reconcile")
    assert out.exit_code == 2 and "--day is required" in out.output


def test_apply_queued_moves_what_a_dead_night_left(fp, world, monkeypatch) -> None:  # noqa: ANN001
    from reconcile import moves

    a = world.ref()
    world.statement(D1, [(10_000, a.code, at(9))])
    real = moves.apply
    monkeypatch.setattr(moves, "apply", lambda conn, now: 1 / 0)  # the apply dies
    assert world.run(D1).status == "balanced"
    monkeypatch.setattr(moves, "apply", real)
    assert fp.references.get(a.code).state.value == "issued"
    out = cli(fp.db.url, "reconcile", "--apply-queued", "--json")
    assert out.exit_code == 0 and json.loads(out.output) == {"moved": 1, "refused": {},
                                                         "moved_back": []}
    assert fp.references.get(a.code).state.value == "settled"
    assert "0 reference(s) moved" in cli(fp.db.url, "reconcile", "--apply-queued").output
