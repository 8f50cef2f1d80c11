"""`feepay statements …`: import bank statements and gateway settlement files, list imports.

    feepay statements import FILE --account ID [--format NAME] [--profiles PATH]
                             [--replace-batches REASON] [--json]
    feepay statements check FILE [--format NAME]        # parse and validate, store nothing
    feepay statements imports [--account ID] [--json]
    feepay statements formats [--json]

A refused file prints ``error: <file>, row <n>, column '<header>': <reason>`` on stderr and
exits with status 2; nothing is stored.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from adapters.statements.registry import adapters, import_file, parse_file
from feepay.clikit import EXIT_INVALID, command, emit, json_option, local_time
from feepay.exceptions import FeepayError
from feepay.money import format_date, format_vnd


def _default_actor() -> str:
    try:
        return os.environ.get("FEEPAY_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def offline(f: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``clikit.command`` for commands that need no database (no ``fp`` argument)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except FeepayError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, default=str), err=True)
            else:
                click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)

    return wrapper


@click.group()
def statements() -> None:
    """Bank statements (sao kê) and gateway settlement files (đối soát)."""


_profiles = click.option(
    "--profiles", "profiles", multiple=True, type=click.Path(exists=True),
    help="Extra statement profile (TOML file or directory); may repeat. "
         "Also read from FEEPAY_STATEMENT_PROFILES.")


@statements.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--account", "account_id", type=int, required=True,
              help="Collection account id the file belongs to (checked against the file).")
@click.option("--format", "fmt", default=None,
              help="Format/profile name (see `feepay statements formats`); "
                   "detected when omitted.")
@click.option("--actor", default=_default_actor, show_default="current user",
              help="Who imports (recorded with the import).")
@click.option("--replace-batches", "replace_reason", default=None, metavar="REASON",
              help="Replace batches already imported with this corrected file; the old "
                   "version is kept in the audit log (settlement files only; REASON is "
                   "recorded).")
@_profiles
@json_option
@command
def import_cmd(fp, file: str, account_id: int, fmt: str | None, actor: str,  # noqa: ANN001
               replace_reason: str | None, profiles: tuple[str, ...], as_json: bool) -> None:
    """Validate the whole FILE, then store its new lines into the account.

    Importing the same file again, or an overlapping period, stores only lines not
    already stored. Two identical lines in one file both stay. A settlement batch the
    file changes is refused unless --replace-batches gives the reason for the correction.
    """
    adapter, result = import_file(fp, file, account_id, fmt=fmt, actor=actor, extra=profiles,
                                  replace_reason=replace_reason)
    data = {"file": result.file_name, "format": adapter.name, "profile": adapter.title,
            "detected": fmt is None, **result.as_dict()}

    def human() -> str:
        how = "detected as" if fmt is None else "read as"
        what = "transactions" if result.kind == "settlement" else "lines"
        text = [f"{result.file_name}: {how} '{adapter.name}' ({adapter.title})",
                f"{result.lines} {what}: {result.new} new, {result.duplicates} already stored "
                f"(import #{result.import_id}, account {account_id})"]
        if result.period_start:
            text.append(f"period {format_date(result.period_start)} – "
                        f"{format_date(result.period_end)}")
        if result.kind == "statement":
            text.append(f"credits {format_vnd(result.credits)}, debits "
                        f"{format_vnd(result.debits)}"
                        + (f", closing balance {format_vnd(result.closing_balance)}"
                           if result.closing_balance is not None else ""))
        else:
            text.append(f"{result.batches} settlement batch(es), net {format_vnd(result.credits)}")
        if result.replaced_batches:
            text.append(f"replaced {len(result.replaced_batches)} stored batch(es): "
                        f"{', '.join(result.replaced_batches)} (old version in the audit log)")
        return "\n".join(text)

    emit(as_json, data, human)


@statements.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", default=None, help="Format/profile name; detected when omitted.")
@_profiles
@json_option
@offline
def check_cmd(file: str, fmt: str | None, profiles: tuple[str, ...], as_json: bool) -> None:
    """Parse and validate FILE completely without storing anything (a preview)."""
    adapter, parsed = parse_file(file, fmt, extra=profiles)
    if adapter.kind == "settlement":
        txns = [t for b in parsed.batches for t in b.transactions]
        data = {"format": adapter.name, "kind": "settlement", "batches": len(parsed.batches),
                "transactions": len(txns), "account_number": parsed.account_number,
                "net_total": sum(b.net_total for b in parsed.batches)}
        human = (f"{file}: '{adapter.name}' settlement file, {len(parsed.batches)} batch(es), "
                 f"{len(txns)} transactions, net {format_vnd(data['net_total'])} — valid")
    else:
        credits = sum(ln.amount for ln in parsed.lines if ln.direction == "credit")
        debits = sum(ln.amount for ln in parsed.lines if ln.direction == "debit")
        data = {"format": adapter.name, "kind": "statement", "lines": len(parsed.lines),
                "account_number": parsed.account_number, "period_start": parsed.period_start,
                "period_end": parsed.period_end, "opening_balance": parsed.opening_balance,
                "closing_balance": parsed.closing_balance, "credits": credits,
                "debits": debits}
        human = (f"{file}: '{adapter.name}' statement, {len(parsed.lines)} lines, credits "
                 f"{format_vnd(credits)}, debits {format_vnd(debits)} — valid")
    emit(as_json, data, human)


@statements.command("imports")
@click.option("--account", "account_id", type=int, default=None, help="Only this account.")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@command
def imports_cmd(fp, account_id: int | None, limit: int, as_json: bool) -> None:  # noqa: ANN001
    """List recorded imports, newest first (file, SHA-256, who, when, counts)."""
    rows = fp.statements.list_imports(account_id, limit)

    def human() -> str:
        if not rows:
            return "no imports yet"
        out = []
        for r in rows:
            out.append(f"#{r['id']:<5} {local_time(r['imported_at'])} {r['actor']:<12} "
                       f"acct {r['account_id']:<4} {r['format']:<12} {r['lines_total']:>7} "
                       f"lines {r['lines_new']:>7} new  {r['file_name']}  "
                       f"sha256:{r['file_sha256'][:12]}")
        return "\n".join(out)

    emit(as_json, {"imports": rows}, human)


@statements.command("formats")
@_profiles
@json_option
@offline
def formats_cmd(profiles: tuple[str, ...], as_json: bool) -> None:
    """List the statement and settlement formats (built-in and user profiles)."""
    items = [a.describe() for a in adapters(profiles).values()]
    lines = [f"{i['name']:<14} {i['kind']:<11} {i['title']}" for i in items]
    emit(as_json, {"formats": items}, "\n".join(lines))


commands: list[click.Command] = [statements]
