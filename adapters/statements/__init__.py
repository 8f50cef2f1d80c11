"""Statement and settlement-file adapters: a file's bytes in, validated models out.

- bank Excel/CSV exports, one declarative TOML profile per bank (``profiles/``; users add
  their own, and packages add adapters through the ``feepay.statements`` entry-point
  group, see :mod:`adapters.statements.registry`);
- SWIFT MT940 (:mod:`~adapters.statements.mt940`);
- ISO 20022 camt.053 / camt.054 (:mod:`~adapters.statements.camt`);
- gateway settlement files, declarative layouts too (``profiles/vnpay.toml``).

Every adapter answers ``identify(source)`` and reads the whole file, raising
:class:`feepay.exceptions.ParseError` with file, row, column and reason. Storing is the
core's job (:mod:`feepay.statements`); :func:`import_file` joins the two.
"""

from __future__ import annotations

from adapters.statements.base import Adapter
from adapters.statements.registry import (
    adapters,
    detect,
    get_adapter,
    import_file,
    parse_file,
    plugins,
    profile_files,
    reload_plugins,
)
from adapters.statements.source import Source

__all__ = ["Adapter", "Source", "adapters", "detect", "get_adapter", "import_file",
           "parse_file", "plugins", "profile_files", "reload_plugins"]
