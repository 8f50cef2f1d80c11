"""The adapter registry: built-ins, third-party entry points (group feepay.adapters)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adapters.callbacks import CallbackAdapter
from adapters.registry import BUILTIN, Registry
from feepay.exceptions import UnknownAdapter


def test_builtins() -> None:
    reg = Registry(include_plugins=False)
    assert set(BUILTIN) <= set(reg.names())
    for name in BUILTIN:
        adapter = reg.get(name)
        assert isinstance(adapter, CallbackAdapter) and adapter.name == name
        assert reg.get(name) is adapter  # one stateless instance
    with pytest.raises(UnknownAdapter, match="no callback adapter named 'paypal'"):
        reg.get("paypal")


PLUGIN = '''
from adapters.banks.signed_webhook import SignedBankWebhook

class MyBank(SignedBankWebhook):
    name = "mybank"
    title = "My Bank"

class Shadow(SignedBankWebhook):
    name = "vnpay"

class NotAnAdapter:
    pass
'''


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed third-party distribution with entry points, as pip would leave it."""
    (tmp_path / "feepay_mybank.py").write_text(PLUGIN)
    info = tmp_path / "feepay_mybank-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: feepay-mybank\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[feepay.adapters]\nmybank = feepay_mybank:MyBank\nvnpay = feepay_mybank:Shadow\n"
        "stmt = feepay_mybank:NotAnAdapter\nbroken = feepay_missing:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("feepay_mybank", None)


def test_entry_points_extend_but_do_not_shadow(plugin_dist: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    reg = Registry()
    assert reg.get("mybank").title == "My Bank"
    assert type(reg.get("vnpay")).__module__ == "adapters.gateways.vnpay"
    assert "stmt" not in reg and "broken" not in reg
    assert "is a built-in adapter" in caplog.text
    assert "cannot load adapter entry point broken" in caplog.text


def test_register_at_run_time() -> None:
    class Dummy(BUILTIN_CLASS):  # type: ignore[misc, valid-type]
        name = "dummy"

    reg = Registry(include_plugins=False)
    reg.register(Dummy)
    assert reg.get("dummy").name == "dummy"
    with pytest.raises(TypeError):
        reg.register(object)  # type: ignore[arg-type]


from adapters.banks.signed_webhook import SignedBankWebhook as BUILTIN_CLASS  # noqa: E402
