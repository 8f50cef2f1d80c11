"""The adapter contract: two small questions, asked of a :class:`~.source.Source`.

Every format — a bank's Excel/CSV profile, MT940, camt.053, camt.054, a gateway
settlement layout — is one object with:

- ``name``: what ``--format NAME`` selects (``vietcombank``, ``mt940``, ``camt.053``…);
- ``kind``: ``statement`` (bank lines) or ``settlement`` (gateway batches);
- ``identify(source) -> bool``: cheap and never raising — is this file mine?
- ``read(source)``: a :class:`feepay.statements.StatementStream` (statements), or
  ``read_settlement(source)``: a :class:`feepay.models.SettlementFile`. Both raise
  :class:`~feepay.exceptions.ParseError` naming file, row/line, column and reason.

``parse(path)`` is the convenience the golden tests use: the whole file as a pydantic
:class:`~feepay.models.Statement` (or SettlementFile).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from adapters.statements.source import Source
from feepay.exceptions import FeepayError
from feepay.models import SettlementFile, Statement
from feepay.statements import StatementStream


class Adapter(ABC):
    """Base of every statement and settlement adapter."""

    name: str = ""
    kind: str = "statement"
    title: str = ""

    @abstractmethod
    def identify(self, source: Source) -> bool:
        """True when the file is in this adapter's format. Never raises."""

    def safe_identify(self, source: Source) -> bool:
        try:
            return bool(self.identify(source))
        except FeepayError:
            return False

    def read(self, source: Source) -> StatementStream:
        raise NotImplementedError(f"{self.name} does not read bank statements")

    def read_settlement(self, source: Source) -> SettlementFile:
        raise NotImplementedError(f"{self.name} does not read settlement files")

    def parse(self, path: str | Path) -> Statement | SettlementFile:
        """The whole file, fully validated, as a pydantic model."""
        source = Source(path)
        try:
            if self.kind == "settlement":
                return self.read_settlement(source)
            return self.read(source).to_statement()
        finally:
            source.close()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "title": self.title}
