"""`feepay channels …` and `feepay inbox list`: input checked against the adapter (in the
library, so API users get the same refusals), local times, the stored body size."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from feepay.api import FeePay
from feepay.exceptions import UnknownAdapter, ValidationError
from feepay.money import VN_TZ
from feepay.storage.tables import AuditRow
from feepay.storage.tables_callbacks import ChannelRow, ChannelSecretRow
from webapp import create_app
from webapp.cli import main


def cli(db_url: str, *args: str, input: str | None = None) -> Result:  # noqa: A002
    return CliRunner().invoke(main, ["--db", db_url, *args], input=input)


def ok(db_url: str, *args: str) -> Result:
    res = cli(db_url, *args)
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


def snapshot(fp: FeePay) -> tuple[int, int, int, list[tuple[str, bool]]]:
    """Channels, secrets, audit entries and (secret name, active) — to prove no write."""
    with fp.db.session() as s:
        return (s.scalar(select(func.count()).select_from(ChannelRow)),
                s.scalar(select(func.count()).select_from(ChannelSecretRow)),
                s.scalar(select(func.count()).select_from(AuditRow)),
                [tuple(r) for r in s.execute(select(ChannelSecretRow.name,
                                                    ChannelSecretRow.active)
                                             .order_by(ChannelSecretRow.id))])


@pytest.fixture
def account_id(fp: FeePay) -> int:
    fp.units.add("40", "Nghệ An", "province")
    return fp.accounts.register("40", "970415", "113000123456", "UBND TINH").id


def refused(db_url: str, args: list[str], field: str, *needles: str) -> None:
    """Exit 2, ``error: <field>: …`` naming each needle on stderr, nothing on stdout; the
    same refusal as a JSON object with --json. Nothing is prompted for."""
    res = cli(db_url, *args)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {field}: "), res.stderr
    for needle in needles:
        assert needle in res.stderr
    assert res.stdout == ""
    res = cli(db_url, *args, "--json")
    assert res.exit_code == 2 and json.loads(res.stderr)["field"] == field


def test_rotate_secret_refuses_a_name_the_adapter_does_not_declare(
        fp: FeePay, db_url: str) -> None:
    ok(db_url, "channels", "add", "vnp1", "--adapter", "vnpay", "--merchant", "TMN1",
       "--secret", "hash_secret=first")
    before = snapshot(fp)
    for extra in ([], ["--retire-previous"], ["--value", "x"],
                  ["--value", "x", "--retire-previous"]):
        refused(db_url, ["channels", "rotate-secret", "vnp1", "hashsecret", *extra],
                "secret", "'hashsecret'", "hash_secret")
    with pytest.raises(ValidationError) as exc:
        fp.channels.rotate_secret("vnp1", "hashsecret", "x", retire_previous=True)
    assert exc.value.field == "secret"
    assert snapshot(fp) == before == (1, 1, 1, [("hash_secret", True)])

    res = ok(db_url, "channels", "rotate-secret", "vnp1", "hash_secret", "--value", "second",
             "--retire-previous", "--json")
    assert [(s["name"], s["active"]) for s in json.loads(res.stdout)["secrets"]] == [
        ("hash_secret", False), ("hash_secret", True)]


def test_add_refuses_unknown_secret_and_setting_names_and_values(
        fp: FeePay, db_url: str, account_id: int) -> None:
    acct = ["--account", str(account_id)]
    base = ["channels", "add", "sp1", "--adapter", "sepay", *acct]
    before = snapshot(fp)
    refused(db_url, [*base, "--secret", "api_key=k", "--setting", "auth=hmca"],
            "setting", "auth", "apikey, hmac", "'hmca'")
    refused(db_url, [*base, "--secret", "api_key=k", "--setting", "authx=hmac"],
            "setting", "'authx'", "auth, tolerance_seconds")
    refused(db_url, [*base, "--secret", "api_key=k", "--setting", "tolerance_seconds=soon"],
            "setting", "tolerance_seconds", "number")
    refused(db_url, [*base, "--secret", "api_key=k", "--setting", "tolerance_seconds=-5"],
            "setting", "tolerance_seconds")
    refused(db_url, [*base, "--secret", "apikey"], "secret", "'apikey'",
            "api_key, webhook_secret")
    refused(db_url, [*base, "--secret", "api_key=k", "--setting", "auth=hmac"],
            "secret", "webhook_secret")  # HMAC mode needs the webhook secret
    refused(db_url, ["channels", "add", "v1", "--adapter", "vnpay", "--secret", "hash_secret=s",
                     "--setting", "auth=hmac"], "setting", "vnpay", "none")
    refused(db_url, ["channels", "add", "zp", "--adapter", "zalopay", "--secret", "key2=s",
                     "--setting", "query_url="], "setting", "query_url")
    assert snapshot(fp) == before

    res = ok(db_url, *base, "--secret", "webhook_secret=w", "--setting", "auth=hmac",
             "--setting", "tolerance_seconds=600", "--json")
    assert json.loads(res.stdout)["settings"] == {"auth": "hmac", "tolerance_seconds": 600}
    # a secret given by name alone is prompted for, after the names were checked
    res = cli(db_url, "channels", "add", "sp2", "--adapter", "sepay", *acct, "--secret",
              "api_key", input="the key\nthe key\n")
    assert res.exit_code == 0, res.output
    assert fp.channels.credentials("sp2").values("api_key") == ("the key",)


def test_bank_channels_need_their_account(fp: FeePay, db_url: str, account_id: int) -> None:
    before = snapshot(fp)
    for adapter, secret in (("bankhook", "webhook_secret"), ("sepay", "api_key"),
                            ("casso", "checksum_key")):
        refused(db_url, ["channels", "add", f"{adapter}-1", "--adapter", adapter, "--secret",
                         f"{secret}=s"], "account_id", adapter, "bank")
        with pytest.raises(ValidationError) as exc:
            fp.channels.add(f"{adapter}-1", adapter, secrets={secret: "s"})
        assert exc.value.field == "account_id"
    assert snapshot(fp) == before
    ok(db_url, "channels", "add", "hook", "--adapter", "bankhook", "--account", str(account_id),
       "--secret", "webhook_secret=s")
    ok(db_url, "channels", "add", "vnp", "--adapter", "vnpay", "--secret", "hash_secret=s")
    assert [c.name for c in fp.channels.list()] == ["hook", "vnp"]


def test_library_checks_for_api_users(fp: FeePay, account_id: int) -> None:
    from feepay.channels import check_settings

    with pytest.raises(UnknownAdapter):
        fp.channels.add("x", "nobank", secrets={"k": "v"}, account_id=account_id)
    with pytest.raises(ValidationError, match="hash_secret"):
        fp.channels.add("x", "vnpay", secrets={"hashsecret": "v"})
    with pytest.raises(ValidationError, match="'hmca'"):
        fp.channels.add("x", "sepay", secrets={"api_key": "v"}, account_id=account_id,
                        settings={"auth": "hmca"})
    assert fp.channels.list() == []
    sepay = fp.channels.spec("sepay")
    fine = {"auth": None, "tolerance_seconds": 0.5}  # None: the default
    assert check_settings(sepay, fine) == fine
    for bad in (True, float("nan"), "300"):
        with pytest.raises(ValidationError):
            check_settings(sepay, {"tolerance_seconds": bad})


def test_channels_adapters_lists_names(db_url: str) -> None:
    data = json.loads(ok(db_url, "channels", "adapters", "--json").stdout)["adapters"]
    sepay = next(a for a in data if a["name"] == "sepay")
    assert (sepay["kind"], sepay["secrets"], sepay["optional_secrets"]) == (
        "bank", [], ["api_key", "webhook_secret"])
    assert set(sepay["settings"]) == {"auth", "tolerance_seconds"}
    assert "vnpay     gateway  secrets: hash_secret" in ok(db_url, "channels", "adapters").stdout


def test_channels_list_shows_local_time(fp: FeePay, db_url: str) -> None:
    ok(db_url, "channels", "add", "vnp1", "--adapter", "vnpay", "--secret", "hash_secret=a")
    ok(db_url, "channels", "rotate-secret", "vnp1", "hash_secret", "--value", "b",
       "--retire-previous")
    data = json.loads(ok(db_url, "channels", "list", "--json").stdout)
    assert set(data[0]) == {"id", "name", "adapter", "account_id", "merchant_id", "settings",
                            "active", "created_at", "secrets"}  # as docs/cli.md lists them
    old, new = data[0]["secrets"]
    retired = datetime.fromisoformat(old["retired_at"])
    added = datetime.fromisoformat(new["created_at"])
    assert retired.utcoffset() is not None and added.utcoffset() is not None
    text = ok(db_url, "channels", "list").stdout
    assert f"retired {retired.astimezone(VN_TZ):%d/%m/%Y %H:%M}\n" in text
    assert f"active since {added.astimezone(VN_TZ):%d/%m/%Y %H:%M}\n" in text


def test_inbox_list_local_time_and_stored_size_of_oversize_rows(
        fp: FeePay, db_url: str, account_id: int) -> None:
    fp.channels.add("hook", "bankhook", secrets={"webhook_secret": "s"}, account_id=account_id)
    client = create_app({"CALLBACK_MAX_BYTES": 100}, fp=fp).test_client()
    assert client.post("/callbacks/bankhook/hook", data=b"x" * 5000).status_code == 413
    assert client.post("/callbacks/bankhook/hook", data=b"{}").status_code != 413
    data = json.loads(ok(db_url, "inbox", "list", "--json").stdout)
    assert set(data["counts"]) == {"received", "processed", "ignored", "rejected"}
    small, big = data["items"]  # newest first
    assert set(big) == {"id", "received_at", "adapter", "channel", "state", "reason",
                        "event_id", "body_size"}  # as docs/cli.md lists them
    assert (big["body_size"], small["body_size"]) == (5000, 2)
    received = datetime.fromisoformat(big["received_at"])
    assert received.utcoffset() is not None
    lines = ok(db_url, "inbox", "list").stdout.splitlines()
    assert lines[2].startswith(
        f"#{big['id']} {received.astimezone(VN_TZ):%d/%m/%Y %H:%M:%S} bankhook/hook rejected "
        "5000 B — ")
    assert lines[1].split()[5:7] == ["2", "B"]
