"""`feepay` sub-commands of this package (gathered by webapp/cli.py)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
