"""The root `feepay` command: gathers each package's command groups (imports point down)."""

from __future__ import annotations

import logging
import os

import click

from feepay.clikit import CliState, refuse
from feepay.exceptions import FeepayError, ValidationError

# Long-running commands whose INFO lines (each night's summary, run outcomes) are their
# whole output: feepay's own loggers log at INFO for them unless -v/-vv or
# FEEPAY_LOG_LEVEL says otherwise (libraries, e.g. alembic, stay at WARNING).
INFO_BY_DEFAULT = frozenset({"scheduler"})
OWN_LOGGERS = ("feepay", "reconcile", "adapters", "webapp")
LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


def _info_for_own_loggers(ctx: click.Context) -> None:
    """Lower feepay's loggers to INFO for this command; put them back when it ends."""
    loggers = [logging.getLogger(name) for name in OWN_LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)

    def restore() -> None:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

    ctx.call_on_close(restore)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", envvar="FEEPAY_DATABASE_URL", default=None,
              help="Database URL (default: FEEPAY_DATABASE_URL or sqlite:///feepay.db).")
@click.option("-v", "--verbose", count=True,
              help="More log output (-vv for debug; `scheduler` logs info by default).")
@click.version_option(package_name="feepay")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, verbose: int) -> None:
    """feepay — collect and reconcile fees and charges (phí, lệ phí) for dossiers.

    Start with `feepay demo`, or `feepay init` then `feepay units import --province 40`.
    """
    env_level = os.environ.get("FEEPAY_LOG_LEVEL")
    logging.basicConfig(level=env_level or LEVELS[min(verbose, len(LEVELS) - 1)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand in INFO_BY_DEFAULT and not verbose and not env_level:
        _info_for_own_loggers(ctx)
    ctx.obj = CliState(db_url)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.option("--dir", "out_dir", default="feepay-demo", show_default=True,
              type=click.Path(file_okay=False),
              help="Where the demo files go, and its fresh SQLite database (feepay.db) unless "
                   "--db or FEEPAY_DATABASE_URL names one; that one must be empty.")
@click.option("--seed", "seed_value", default=0, show_default=True, help="Random seed.")
@click.option("--dossiers", default=20, show_default=True,
              help="Dossiers to issue (at least 15: every mismatch category needs a few).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def demo(state: CliState, out_dir: str, seed_value: int, dossiers: int, as_json: bool) -> None:
    """Run the demo: a province, accounts, fee items, references with VietQR (SQLite)."""
    from pathlib import Path

    from reconcile.demo import MIN_DOSSIERS
    from webapp.demo import run

    try:
        if dossiers < MIN_DOSSIERS:
            raise ValidationError(f"{dossiers} is too few: the demo day needs at least "
                                  f"{MIN_DOSSIERS} dossiers", field="dossiers")
        run(Path(out_dir), seed_value=seed_value, dossiers=dossiers, as_json=as_json,
            db_url=state.db_url)
    except FeepayError as exc:
        refuse(exc, as_json)  # demo opens its own database: not a clikit.command


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
