"""Small helpers every `feepay` sub-command uses: the FeePay handle, --json output, errors.

Conventions (docs/cli.md):
- every command accepts ``--json``; JSON goes to stdout, one document, stable keys;
- human text goes to stdout, log lines and errors to stderr;
- a refused input prints ``error: <field>: <reason>`` (or the JSON error object with
  ``--json``) on stderr and exits with status 2; nothing is written.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import click

from feepay.exceptions import FeepayError

EXIT_INVALID = 2


class CliState:
    """Lazily opens the FeePay handle so that `--help` never touches a database."""

    def __init__(self, db_url: str | None) -> None:
        self.db_url = db_url
        self._fp = None

    @property
    def fp(self):  # noqa: ANN201 - FeePay
        if self._fp is None:
            from feepay.api import FeePay

            self._fp = FeePay.open(self.db_url)
        return self._fp

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document (stable keys, see docs/cli.md).")(f)


def _default(o: object) -> object:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")  # type: ignore[attr-defined]
    if isinstance(o, set | tuple | frozenset):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit(as_json: bool, data: object, human: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the human text."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=_default))
    else:
        click.echo(human() if callable(human) else human)


def command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body: pass ``fp`` first and turn FeepayError into exit 2 + stderr."""

    @functools.wraps(f)
    @click.pass_obj
    def wrapper(state: CliState, *args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        try:
            return f(state.fp, *args, **kwargs)
        except FeepayError as exc:
            if as_json:
                click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, default=str),
                           err=True)
            else:
                click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)

    return wrapper
