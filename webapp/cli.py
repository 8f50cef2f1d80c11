"""The root `feepay` command: gathers each package's command groups (imports point down)."""

from __future__ import annotations

import logging
import os

import click

from feepay.clikit import CliState


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", envvar="FEEPAY_DATABASE_URL", default=None,
              help="Database URL (default: FEEPAY_DATABASE_URL or sqlite:///feepay.db).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="feepay")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, verbose: int) -> None:
    """feepay — collect and reconcile fees and charges (phí, lệ phí) for dossiers.

    Start with `feepay demo`, or `feepay init` then `feepay units import --province 40`.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=os.environ.get("FEEPAY_LOG_LEVEL", level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(db_url)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.option("--dir", "out_dir", default="feepay-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the demo database and files go.")
@click.option("--seed", "seed_value", default=0, show_default=True, help="Random seed.")
@click.option("--dossiers", default=20, show_default=True, help="Dossiers to issue.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def demo(state: CliState, out_dir: str, seed_value: int, dossiers: int, as_json: bool) -> None:
    """Run the demo: a province, accounts, fee items, references with VietQR (SQLite)."""
    from pathlib import Path

    from webapp.demo import run

    run(Path(out_dir), seed_value=seed_value, dossiers=dossiers, as_json=as_json,
        db_url=state.db_url)


def _register() -> None:
    from adapters.cli_channels import commands as channel_commands
    from adapters.cli_statements import commands as statement_commands
    from feepay.cli import commands as core_commands
    from reconcile.cli import commands as reconcile_commands
    from webapp.commands import commands as web_commands

    for group in (core_commands, channel_commands, statement_commands, reconcile_commands,
                  web_commands):
        for cmd in group:
            main.add_command(cmd)


_register()
