"""Small helpers every `feepay` sub-command uses: the FeePay handle, --json output, errors.

Conventions (docs/cli.md):
- every command accepts ``--json``; JSON goes to stdout, one document, stable keys;
- human text goes to stdout, log lines and errors to stderr;
- a refused input prints ``error: <field>: <reason>`` (or the JSON error object with
  ``--json``) on stderr and exits with status 2; nothing is written;
- human text shows times in Asia/Ho_Chi_Minh local time, ``dd/mm/yyyy HH:MM``
  (:func:`local_time`); JSON keeps ISO 8601 with the offset.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, NoReturn

import click

from feepay.exceptions import FeepayError, ValidationError
from feepay.money import VN_TZ, require_aware

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


def parse_day(value: str | None, field: str) -> date | None:
    """A date typed on the command line, ``YYYY-MM-DD`` or ``dd/mm/yyyy``; ``None`` if empty.

    Raises:
        ValidationError: naming ``field`` when the text is neither.
    """
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValidationError(f"'{value}' is not a date (YYYY-MM-DD or dd/mm/yyyy)", field=field)


def local_time(moment: datetime | str | None, *, seconds: bool = False) -> str:
    """``moment`` as people here read it: Asia/Ho_Chi_Minh, ``dd/mm/yyyy HH:MM[:SS]``.

    Storage and JSON hold UTC (ISO 8601 with offset); a reader of human output should
    not have to add 7 hours. Accepts an aware datetime or its ISO 8601 text (the audit
    log hands out text); ``None`` prints as ``-``.
    """
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = require_aware(moment).astimezone(VN_TZ)
    return local.strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")


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


def refuse(exc: FeepayError, as_json: bool = False) -> NoReturn:
    """A refused input: the error on stderr (JSON with ``--json``), exit 2."""
    if as_json:
        click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, default=str), err=True)
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INVALID)


def command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body: pass ``fp`` first and turn FeepayError into exit 2 + stderr."""

    # ``cli_state`` is positional-only: click passes every option as a keyword, so an
    # option named like this parameter (``accounts list --state``) must not collide.
    @functools.wraps(f)
    @click.pass_obj
    def wrapper(cli_state: CliState, /, *args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        try:
            return f(cli_state.fp, *args, **kwargs)
        except FeepayError as exc:
            refuse(exc, as_json)

    return wrapper
