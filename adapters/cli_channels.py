"""`feepay channels …`: bind callback adapters to accounts, hold their secrets, rotate them.

Secrets are never echoed: give them as ``--secret name=value`` (scripts; beware shell
history) or ``--secret name`` alone to be prompted with hidden input.
"""

from __future__ import annotations

import json

import click

from feepay import clikit
from feepay.channels import check_name
from feepay.exceptions import ValidationError


def _parse_pairs(pairs: tuple[str, ...], what: str, *, prompt: bool) -> dict[str, str | None]:
    """``NAME=VALUE`` options as a dict; ``NAME`` alone (when ``prompt``) maps to ``None``,
    to be prompted for once the names have been checked."""
    out: dict[str, str | None] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not name:
            raise ValidationError(f"--{what} needs NAME=VALUE", field=what)
        if not sep and not prompt:
            raise ValidationError(f"--{what} {name} needs =VALUE", field=what)
        out[name] = value if sep else None
    return out


def _settings(pairs: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in _parse_pairs(pairs, "setting", prompt=False).items():
        assert value is not None  # prompt=False: every setting has =VALUE
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _describe(ch) -> str:  # noqa: ANN001
    acct = f"account {ch.account_id}" if ch.account_id else "no account"
    merch = f", merchant {ch.merchant_id}" if ch.merchant_id else ""
    lines = [f"{ch.name}: {ch.adapter}, {acct}{merch}, "
             f"{'active' if ch.active else 'disabled'} — URL /callbacks/{ch.adapter}/{ch.name}"]
    for s in ch.secrets:
        state = (f"active since {clikit.local_time(s.created_at)}" if s.active
                 else f"retired {clikit.local_time(s.retired_at)}")
        lines.append(f"  secret #{s.id} {s.name} [{s.fingerprint}] {state}")
    return "\n".join(lines)


@click.group("channels")
def channels() -> None:
    """Callback channels: an adapter + a collection account + its secrets."""


@channels.command("add")
@click.argument("name")
@click.option("--adapter", required=True, help="vnpay, momo, zalopay, sepay, casso, bankhook…")
@click.option("--account", "account_id", type=int, help="Collection account id it credits.")
@click.option("--merchant", "merchant_id",
              help="Provider's id for us: vnp_TmnCode, MoMo partnerCode, ZaloPay app_id.")
@click.option("--secret", "secrets", multiple=True,
              help="NAME=VALUE, or NAME alone to be prompted (repeatable).")
@click.option("--setting", "settings", multiple=True, help="KEY=VALUE (repeatable).")
@clikit.json_option
@clikit.command
def add(fp, name: str, adapter: str, account_id: int | None, merchant_id: str | None,  # noqa: ANN001
        secrets: tuple[str, ...], settings: tuple[str, ...], as_json: bool) -> None:
    """Create channel NAME; callbacks then go to /callbacks/<adapter>/NAME.

    Secret and setting names are checked against the adapter (`feepay channels
    adapters`); a bank adapter's channel needs --account.
    """
    conf = _settings(settings)
    given = _parse_pairs(secrets, "secret", prompt=True)
    check_name(name)
    # refuse bad names before asking for any value (the library checks again on add)
    fp.channels.check(adapter, secrets=given, settings=conf, account_id=account_id)
    values = {k: v if v is not None else
              click.prompt(k, hide_input=True, confirmation_prompt=True)
              for k, v in given.items()}
    ch = fp.channels.add(name, adapter, secrets=values, account_id=account_id,
                         merchant_id=merchant_id, settings=conf, actor="cli")
    clikit.emit(as_json, ch, lambda: _describe(ch))


@channels.command("adapters")
@clikit.json_option
def adapters_(as_json: bool) -> None:
    """The callback adapters, with the secrets and settings a channel of each takes."""
    from adapters.registry import default_registry

    reg = default_registry()
    items = []
    for adapter_name in reg.names():
        a = reg.get(adapter_name)
        items.append({"name": a.name, "kind": a.kind, "title": a.title,
                      "secrets": list(a.secret_names),
                      "optional_secrets": [n for n in a.optional_secrets
                                           if n not in a.secret_names],
                      "settings": dict(a.settings_help)})

    def human() -> str:
        out = []
        for i in items:
            secrets = ", ".join([*i["secrets"], *(f"[{n}]" for n in i["optional_secrets"])])
            out.append(f"{i['name']:<9} {i['kind']:<8} secrets: {secrets or '-'}  — {i['title']}")
            out += [f"          setting {k}: {v}" for k, v in i["settings"].items()]
        return "\n".join(out)

    clikit.emit(as_json, {"adapters": items}, human)


@channels.command("list")
@clikit.json_option
@clikit.command
def list_(fp, as_json: bool) -> None:  # noqa: ANN001
    """List channels and their secrets (fingerprints only)."""
    items = fp.channels.list()
    clikit.emit(as_json, items,
                lambda: "\n".join(_describe(c) for c in items) or "no channels")


@channels.command("rotate-secret")
@click.argument("name")
@click.argument("secret_name")
@click.option("--value", help="The new value (prompted, hidden, when omitted).")
@click.option("--retire-previous", is_flag=True,
              help="Stop accepting the previous value(s) at once (default: keep both).")
@clikit.json_option
@clikit.command
def rotate_secret(fp, name: str, secret_name: str, value: str | None,  # noqa: ANN001
                  retire_previous: bool, as_json: bool) -> None:
    """Add a new value of SECRET_NAME to channel NAME (old values stay accepted).

    SECRET_NAME must be one the channel's adapter declares (`feepay channels adapters`).
    """
    fp.channels.check_rotation(name, secret_name)  # before prompting for the value
    if value is None:
        value = click.prompt(secret_name, hide_input=True, confirmation_prompt=True)
    ch = fp.channels.rotate_secret(name, secret_name, value,
                                   retire_previous=retire_previous, actor="cli")
    clikit.emit(as_json, ch, lambda: _describe(ch))


@channels.command("retire-secret")
@click.argument("name")
@click.argument("secret_id", type=int)
@clikit.json_option
@clikit.command
def retire_secret(fp, name: str, secret_id: int, as_json: bool) -> None:  # noqa: ANN001
    """Stop accepting secret SECRET_ID of channel NAME (after the provider switched)."""
    ch = fp.channels.retire_secret(name, secret_id, actor="cli")
    clikit.emit(as_json, ch, lambda: _describe(ch))


@channels.command("poll")
@click.argument("name")
@clikit.json_option
@clikit.command
def poll(fp, name: str, as_json: bool) -> None:  # noqa: ANN001
    """Ask the gateway about open orders of channel NAME (ZaloPay) and record paid ones."""
    from adapters.poller import poll_zalopay

    report = poll_zalopay(fp, name)
    clikit.emit(as_json, report.as_dict(),
                lambda: f"{name}: asked {report.asked}, paid {len(report.paid)}, failed "
                        f"{len(report.failed)}, open {len(report.still_open)}, errors "
                        f"{len(report.errors)}")


commands: list[click.Command] = [channels]
