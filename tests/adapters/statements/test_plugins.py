"""Statement adapters from third-party packages: the ``feepay.statements`` entry-point group.

A distribution is "installed" the way pip leaves it — a module and a ``*.dist-info`` with
``entry_points.txt`` in a directory on ``sys.path`` — and found through
``importlib.metadata``, exactly as in production. Its adapters then detect, check and
import files like the built-in ones.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.registry import Registry
from adapters.statements import Source, adapters, detect, import_file, parse_file, reload_plugins
from adapters.statements.registry import GROUP
from feepay.exceptions import ValidationError
from webapp.cli import main

ACCOUNT = "9990001234567"

PLUGIN = '''
"""A tiny statement format: 'DEMOBANK <account>' then 'dd/mm/yyyy HH:MM:SS;C|D;amount;memo'."""
from datetime import datetime
from pathlib import Path

from adapters.statements.base import Adapter
from adapters.statements.tabular import Profile, make_adapter
from feepay.exceptions import ParseError
from feepay.statements import VN_FIXED, Line, StatementInfo, StatementStream


class DemoBank(Adapter):
    name = "demobank"
    title = "Demo bank plain-text statement"

    def identify(self, source):
        return source.kind == "text" and source.head_text().startswith("DEMOBANK ")

    def read(self, source):
        rows = source.path.read_text(encoding="utf-8").splitlines()
        info = StatementInfo(source.name, self.name, account_number=rows[0].split()[1])

        def lines():
            for no, row in enumerate(rows[1:], start=2):
                when, mark, amount, memo = row.split(";")
                if not amount.isdigit():
                    raise ParseError(f"'{amount}' is not an amount", source=source.name,
                                     line=no, column="amount")
                moment = datetime.strptime(when, "%d/%m/%Y %H:%M:%S").replace(tzinfo=VN_FIXED)
                yield Line(no, moment.date(), int(amount), "credit" if mark == "C" else "debit",
                           moment, None, memo)

        return StatementStream(info, lines())


class Shadow(DemoBank):
    name = "vietcombank"


class NotAnAdapter:
    name = "notadapter"


def shipped_profile():
    """A package shipping a declarative TOML profile instead of Python."""
    return make_adapter(Profile.load(Path(__file__).with_name("demo_signed.toml")))


def explodes():
    raise RuntimeError("plugin bug")


demo_instance = DemoBank()
'''

SIGNED_PROFILE = Path(__file__).with_name("demo_signed.toml").read_text(encoding="utf-8")

ENTRY_POINTS = f"""[{GROUP}]
demobank = feepay_stmtplugin:DemoBank
demo-signed = feepay_stmtplugin:shipped_profile
vietcombank = feepay_stmtplugin:Shadow
wrongname = feepay_stmtplugin:demo_instance
notadapter = feepay_stmtplugin:NotAnAdapter
explodes = feepay_stmtplugin:explodes
broken = feepay_missing_module:Nope
"""


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed third-party distribution with statement entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "feepay_stmtplugin.py").write_text(PLUGIN, encoding="utf-8")
    (site / "demo_signed.toml").write_text(SIGNED_PROFILE, encoding="utf-8")
    info = site / "feepay_stmtplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: feepay-stmtplugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    reload_plugins()
    yield site
    reload_plugins()  # later tests must not see the plugin
    sys.modules.pop("feepay_stmtplugin", None)


def demo_file(path: Path, account: str = ACCOUNT) -> Path:
    path.write_text(f"DEMOBANK {account}\n"
                    "03/11/2025 09:05:10;C;50000;FP7K3MQ9XA4C nop phi\n"
                    "03/11/2025 09:05:40;C;50000;FP7K3MQ9XA4C nop phi\n"
                    "03/11/2025 10:00:00;D;1100;Phi SMS\n", encoding="utf-8")
    return path


def test_entry_points_add_formats_but_do_not_shadow(plugin_dist: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    known = adapters()
    assert known["demobank"].title == "Demo bank plain-text statement"
    assert known["demo-signed"].kind == "statement"  # a shipped TOML profile
    assert type(known["vietcombank"]).__module__ == "adapters.statements.tabular"
    for skipped in ("wrongname", "notadapter", "explodes", "broken"):
        assert skipped not in known
    log = caplog.text
    assert "'vietcombank' is a built-in format" in log
    assert "wrongname=feepay_stmtplugin:demo_instance gives an adapter named 'demobank'" in log
    assert "notadapter=feepay_stmtplugin:NotAnAdapter is not an Adapter subclass" in log
    assert "cannot make the statement adapter of entry point explodes" in log
    assert "cannot load statement adapter entry point broken" in log
    # loaded once per process: a second look neither reloads nor logs again
    caplog.clear()
    assert adapters()["demobank"] is known["demobank"]
    assert caplog.text == ""


def test_plugin_format_detects_checks_and_imports(plugin_dist: Path, tmp_path: Path,
                                                  fp) -> None:  # noqa: ANN001
    path = demo_file(tmp_path / "demo.txt")
    source = Source(path)
    try:
        assert detect(source).name == "demobank"  # claimed by the plugin and no other
    finally:
        source.close()
    _, statement = parse_file(path)
    assert [line.amount for line in statement.lines] == [50_000, 50_000, 1_100]

    fp.units.add("40", "Tỉnh Nghệ An (thử nghiệm)", "province")
    account = fp.accounts.register("40", "970436", ACCOUNT, "DON VI THU PHI TEST").id
    adapter, first = import_file(fp, path, account)
    _, again = import_file(fp, path, account)
    assert adapter.name == "demobank" and first.format == "demobank"
    assert (first.lines, first.new, again.new, again.duplicates) == (3, 3, 0, 3)
    # the whole-file checks apply to plugin formats too
    other = demo_file(tmp_path / "other.txt", account="9990009999999")
    with pytest.raises(ValidationError, match="nothing was imported"):
        import_file(fp, other, account)
    assert fp.statements.count_lines(account) == 3


def test_shipped_profile_reads_its_files(plugin_dist: Path, tmp_path: Path) -> None:
    path = tmp_path / "signed.csv"
    path.write_text("NGAN HANG DEMO\nNgày,Loại,Số tiền,Nội dung\n"
                    "03/11/2025 09:05:10,C,\"50,000\",FP7K3MQ9XA4C\n"
                    "03/11/2025 10:00:00,D,\"1,100\",Phi SMS\n", encoding="utf-8")
    adapter, statement = parse_file(path)
    assert adapter.name == "demo-signed"
    assert [(x.direction, x.amount, x.value_at.second) for x in statement.lines] == [
        ("credit", 50_000, 10), ("debit", 1_100, 0)]


def test_plugin_listed_by_the_cli(plugin_dist: Path) -> None:
    res = CliRunner().invoke(main, ["statements", "formats", "--json"])
    assert res.exit_code == 0, res.output
    names = {f["name"]: f for f in json.loads(res.output)["formats"]}
    assert names["demobank"]["title"] == "Demo bank plain-text statement"
    assert "demo-signed" in names and "wrongname" not in names


def test_user_profile_replaces_a_plugin(plugin_dist: Path, tmp_path: Path) -> None:
    mine = tmp_path / "demobank.toml"
    mine.write_text(SIGNED_PROFILE.replace('name = "demo-signed"', 'name = "demobank"'),
                    encoding="utf-8")
    assert type(adapters([mine])["demobank"]).__module__ == "adapters.statements.tabular"


def test_callback_registry_does_not_see_statement_plugins(plugin_dist: Path) -> None:
    """The two groups are separate: a statement format is not a callback adapter."""
    assert "demobank" not in Registry()


def test_without_plugins_only_builtins() -> None:
    reload_plugins()
    assert "demobank" not in adapters()
