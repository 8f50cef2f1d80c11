"""The `feepay` command: every core sub-command has --help and --json; bad input is an
error on stderr naming the field, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from feepay import reference as refcodes
from feepay.storage.tables import AccountRow, ReferenceRow
from webapp.cli import main


def run(db_url: str, *args: str, input: str | None = None):  # noqa: A002, ANN201
    return CliRunner().invoke(main, ["--db", db_url, *args], input=input,
                              catch_exceptions=False)


def all_commands(group=main, prefix=()):  # noqa: ANN001, ANN201
    import click

    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands()), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(main, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def leaf_commands(group=main, prefix=()):  # noqa: ANN001, ANN201
    import click

    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def test_every_command_is_documented() -> None:
    """Every `--json` help points to docs/cli.md for the keys: each command is there."""
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert [name for name in leaf_commands() if f"`{name}" not in doc] == []


def test_console_script_help() -> None:
    script = shutil.which("feepay", path=os.path.dirname(sys.executable)) or "feepay"
    out = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "feepay" in out.stdout


def test_core_flow_with_json(fp, db_url) -> None:  # noqa: ANN001
    assert json.loads(run(db_url, "init", "--json").output)["revision"]
    assert json.loads(run(db_url, "units", "import", "--province", "40", "--json").output)[
        "added"] > 100
    res = run(db_url, "users", "add", "kb.one", "--role", "treasury", "--json",
              input="treasury password\ntreasury password\n")
    assert res.exit_code == 0, res.output
    res = run(db_url, "accounts", "register", "--unit", "40", "--bank", "970415", "--number",
              "113000123456", "--holder", "UBND TINH", "--valid-from", "01/07/2025", "--json")
    acc = json.loads(res.output)
    assert acc["number_masked"] == "••••••••3456" and acc["state"] == "pending"
    assert "113000123456" not in res.output
    for step in ("verify", "activate"):
        res = run(db_url, "accounts", step, str(acc["id"]), "--by", "kb.one", "--json")
        assert res.exit_code == 0, res.output
    res = run(db_url, "fees", "add", "--procedure", "1.001612", "--code", "LP-01", "--name",
              "Lệ phí khai sinh", "--kind", "le_phi", "--amount", "8.000", "--from",
              "2025-07-01", "--json")
    assert json.loads(res.output)["amount"] == 8000
    res = run(db_url, "refs", "issue", "--dossier", "HS-CLI-1", "--unit", "40", "--item",
              "LP-01", "--json")
    ref = json.loads(res.output)
    assert set(ref) >= {"code", "display_code", "amount_due", "state", "memo", "vietqr",
                        "expires_at", "account_masked", "items"}
    again = json.loads(run(db_url, "refs", "issue", "--dossier", "HS-CLI-1", "--unit", "40",
                           "--item", "LP-01", "--json").output)
    assert again["code"] == ref["code"]
    shown = json.loads(run(db_url, "refs", "show", ref["display_code"], "--json").output)
    assert shown["code"] == ref["code"]
    found = json.loads(run(db_url, "refs", "find", f"ck {ref['code'].lower()} nop phi",
                           "--json").output)
    assert found[0]["codes"] == [ref["code"]]
    res = run(db_url, "refs", "cancel", ref["code"], "--reason", "rút hồ sơ", "--json")
    assert json.loads(res.output)["state"] == "cancelled"
    assert json.loads(run(db_url, "audit", "verify", "--json").output)["ok"] is True


@pytest.mark.parametrize(("args", "needle"), [
    (["accounts", "register", "--unit", "40", "--bank", "970415", "--number", "12ab",
      "--holder", "X Y"], "account_number"),
    (["accounts", "register", "--unit", "40", "--bank", "111111", "--number", "123456",
      "--holder", "X Y"], "bank_bin"),
    (["accounts", "register", "--unit", "40", "--bank", "970415", "--number", "123456789",
      "--holder", "X Y", "--valid-from", "31/02/2025"], "valid_from"),
    (["refs", "issue", "--dossier", "HS-X", "--unit", "40", "--item", "NOPE"], "items"),
    (["fees", "add", "--procedure", "1.001612", "--code", "LP-02", "--name", "x", "--kind",
      "le_phi", "--amount", "12.5OO"], "amount"),
    (["refs", "show", "FP2222222222"], "reference"),
])
def test_bad_input_exit_2_and_nothing_written(fp, db_url, args, needle) -> None:  # noqa: ANN001
    run(db_url, "units", "import", "--province", "40")
    res = CliRunner().invoke(main, ["--db", db_url, *args])
    assert res.exit_code == 2
    assert needle in res.stderr and res.stderr.startswith("error:")
    assert res.stdout == ""
    res = CliRunner().invoke(main, ["--db", db_url, *args, "--json"])
    assert res.exit_code == 2 and json.loads(res.stderr)["field"] == needle
    with fp.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AccountRow)) == 0
        assert s.scalar(select(func.count()).select_from(ReferenceRow)) == 0


def test_refs_find_reads_stdin() -> None:
    code = refcodes.generate()
    res = CliRunner().invoke(main, ["refs", "find"], input=f"a {code}\nnothing here\n")
    assert res.output.splitlines() == [code, "-"]
