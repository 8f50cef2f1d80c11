"""`feepay accounts …` end to end through the CLI (every sub-command, human text and
--json), and local time in the human output of the core commands."""

from __future__ import annotations

import json
from datetime import datetime

from click.testing import CliRunner, Result

from feepay.money import VN_TZ
from webapp.cli import main


def run(db_url: str, *args: str, input: str | None = None) -> Result:  # noqa: A002
    res = CliRunner().invoke(main, ["--db", db_url, *args], input=input)
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


def _setup(db_url: str) -> None:
    run(db_url, "units", "add", "--code", "40", "--name", "Nghệ An", "--kind", "province")
    run(db_url, "units", "add", "--code", "40-STP", "--name", "Sở Tư pháp", "--kind",
        "department", "--parent", "40")
    run(db_url, "users", "add", "kb.one", "--role", "treasury",
        input="treasury password\ntreasury password\n")


def test_accounts_every_subcommand_human_and_json(db_url: str) -> None:
    _setup(db_url)
    banks = json.loads(run(db_url, "accounts", "banks", "--json").stdout)
    assert {"bin": "970415", "short_name": "VietinBank"}.items() <= next(
        b for b in banks if b["bin"] == "970415").items()
    assert "970415 VietinBank" in run(db_url, "accounts", "banks").stdout

    res = run(db_url, "accounts", "register", "--unit", "40", "--bank", "970415", "--number",
              "113000123456", "--holder", "UBND TINH", "--valid-from", "01/07/2025")
    assert res.stdout.strip() == ("registered #1 40 VietinBank ••••••••3456 UBND TINH "
                                  "[phi+le_phi] pending")
    other = json.loads(run(db_url, "accounts", "register", "--unit", "40-STP", "--bank",
                           "970436", "--number", "0071000999888", "--holder", "SO TU PHAP",
                           "--fee-kinds", "le_phi", "--json").stdout)
    assert (other["id"], other["unit_code"], other["fee_kinds"], other["state"]) == (
        2, "40-STP", ["le_phi"], "pending")
    assert "0071000999888" not in json.dumps(other)

    res = run(db_url, "accounts", "verify", "1", "--by", "kb.one")
    assert res.stdout.strip().endswith("verified")
    assert json.loads(run(db_url, "accounts", "verify", "2", "--by", "kb.one", "--json")
                      .stdout)["verified_by"] == "kb.one"
    assert run(db_url, "accounts", "activate", "1").stdout.strip().endswith("active")
    assert json.loads(run(db_url, "accounts", "activate", "2", "--json").stdout)[
        "state"] == "active"
    assert json.loads(run(db_url, "accounts", "retire", "2", "--reason", "đóng tài khoản",
                          "--json").stdout)["state"] == "retired"

    # `list` with --state crashed: "got multiple values for argument 'state'"
    listed = run(db_url, "accounts", "list").stdout.splitlines()
    assert listed == ["#1 40 VietinBank ••••••••3456 UBND TINH [phi+le_phi] active",
                      "#2 40-STP Vietcombank •••••••••9888 SO TU PHAP [le_phi] retired"]
    assert [a["id"] for a in json.loads(run(db_url, "accounts", "list", "--json").stdout)] \
        == [1, 2]
    active = json.loads(run(db_url, "accounts", "list", "--state", "active", "--json").stdout)
    assert [(a["id"], a["state"]) for a in active] == [(1, "active")]
    assert run(db_url, "accounts", "list", "--state", "retired").stdout.startswith("#2 ")
    assert run(db_url, "accounts", "list", "--state", "pending").stdout.strip() == "no accounts"
    by_unit = json.loads(run(db_url, "accounts", "list", "--unit", "40-STP", "--state",
                             "retired", "--json").stdout)
    assert [a["id"] for a in by_unit] == [2]


def test_audit_list_prints_local_time_json_keeps_offset(db_url: str) -> None:
    _setup(db_url)
    entries = json.loads(run(db_url, "audit", "list", "--json").stdout)
    at = datetime.fromisoformat(entries[0]["at"])
    assert at.utcoffset() is not None  # ISO 8601 with its offset
    first = run(db_url, "audit", "list").stdout.splitlines()[0]
    assert first.startswith(f"#{entries[0]['id']} {at.astimezone(VN_TZ):%d/%m/%Y %H:%M} ")
    assert entries[0]["at"] not in first
