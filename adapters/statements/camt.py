"""ISO 20022 camt.053 (bank-to-customer statement) and camt.054 (debit/credit notification).

Versions ``camt.053.001.02`` to ``.001.13`` and ``camt.054.001.02`` to ``.001.13`` are read
(``.02``–``.08`` are covered by the golden samples). Elements used, by their XML path
below the message root (``BkToCstmrStmt/Stmt`` or ``BkToCstmrDbtCdtNtfctn/Ntfctn``):

==========================================  =========================================
``Acct/Id/IBAN`` or ``Acct/Id/Othr/Id``     account number (checked against --account)
``Acct/Ccy``, ``Amt/@Ccy``                  currency: VND only
``FrToDt/FrDtTm``, ``FrToDt/ToDtTm``        period
``Bal[Tp/CdOrPrtry/Cd=OPBD|PRCD]``          opening balance (camt.053)
``Bal[Tp/CdOrPrtry/Cd=CLBD]``               closing balance (camt.053)
``Ntry/Amt``, ``Ntry/CdtDbtInd``            amount and direction (CRDT / DBIT)
``Ntry/RvslInd``                            reversal: the indicator already gives the
                                            direction of the reversing entry (ISO usage
                                            rule), so it is not flipped again
``Ntry/Sts`` (``Sts/Cd`` from .08)          only ``BOOK`` entries are lines; ``PDNG`` and
                                            ``INFO`` entries are skipped
``Ntry/BookgDt/Dt|DtTm``                    posting date
``Ntry/ValDt/DtTm`` (else ``BookgDt/DtTm``) value time
``Ntry/AcctSvcrRef``, ``TxDtls/Refs/*``     bank reference
``TxDtls/RmtInf/Ustrd``, ``AddtlTxInf``     memo (``AddtlNtryInf`` as a fallback)
``TxDtls/RltdPties/Dbtr[/Pty]/Nm`` etc.     counterparty (``Pty`` level from .08)
==========================================  =========================================

A batch entry with several ``TxDtls``, each with its own amount (``AmtDtls/TxAmt/Amt`` or
``Amt``) adding up to the entry, becomes one line per transaction; otherwise one line.

The XML is parsed with ``defusedxml`` with DTDs forbidden: a file with a ``<!DOCTYPE``
(external entities, entity-expansion "billion laughs") is refused before any entity is
expanded or fetched.

More information: ISO 20022 message definition reports for camt.053/camt.054
(iso20022.org, "Bank-to-Customer Cash Management").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder
from xml.etree.ElementTree import ParseError as XMLSyntaxError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from adapters.statements.base import Adapter
from adapters.statements.source import Source
from feepay.exceptions import InvalidAmount, ParseError
from feepay.money import VN_TZ, format_vnd, parse_vnd
from feepay.statements import CREDIT, DEBIT, VN_FIXED, Line, StatementInfo, StatementStream

_NS = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[34])\.001\.(\d{2})")
_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
VERSIONS = range(2, 14)
MAX_XML_BYTES = 512 * 1024 * 1024


class _LineBuilder(TreeBuilder):
    """A tree builder that remembers the source line of each element."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Element, int] = {}
        self.parser: Any = None

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        elem = super().start(tag, attrs)
        self.lines[elem] = self.parser.parser.CurrentLineNumber
        return elem


@dataclass
class _Part:
    """One Stmt / Ntfctn element."""

    line: int
    ident: str
    account: str | None
    opening: int | None
    closing: int | None
    start: date | None
    end: date | None
    lines: list[Line] = field(default_factory=list)


class Camt(Adapter):
    """camt.053 or camt.054, one adapter each (they must not identify each other's files)."""

    kind = "statement"

    def __init__(self, message: str) -> None:
        self.message = message
        self.name = f"camt.{message}"
        self.title = ("ISO 20022 camt.053 bank-to-customer statement" if message == "053"
                      else "ISO 20022 camt.054 debit/credit notification")
        self.root = "BkToCstmrStmt" if message == "053" else "BkToCstmrDbtCdtNtfctn"
        self.item = "Stmt" if message == "053" else "Ntfctn"

    def identify(self, source: Source) -> bool:
        if source.kind != "text":
            return False
        head = source.head_text()[:4000].lstrip("\ufeff \r\n\t")
        if not head.startswith("<"):
            return False
        match = _NS.search(head)
        return bool(match and match.group(1) == self.message
                    and int(match.group(2)) in VERSIONS)

    # parsing -----------------------------------------------------------------------------
    def _tree(self, source: Source) -> tuple[Element, dict[Element, int]]:
        source.require("text", what=f"a {self.name} XML file")
        if source.size > MAX_XML_BYTES:
            raise ParseError("the XML file is larger than 512 MB", source=source.name)
        builder = _LineBuilder()
        parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True,
                                  forbid_external=True)
        builder.parser = parser
        try:
            with source.path.open("rb") as fh:
                for block in iter(lambda: fh.read(1024 * 1024), b""):
                    parser.feed(block)
            root = parser.close()
        except DefusedXmlException as exc:
            raise ParseError(f"refused: the XML declares a DTD or entities "
                             f"({type(exc).__name__}); camt files never need one, and "
                             "entities can fetch files or exhaust memory",
                             source=source.name) from None
        except XMLSyntaxError as exc:
            line = exc.position[0] if exc.position else None
            raise ParseError(f"not well-formed XML: {exc}", source=source.name,
                             line=line) from None
        return root, builder.lines

    def read(self, source: Source) -> StatementStream:
        root, lines = self._tree(source)
        match = _NS.match(root.tag[1:]) if root.tag.startswith("{") else None
        if not match or match.group(1) != self.message or int(match.group(2)) not in VERSIONS:
            raise ParseError(f"the root element {root.tag} is not a {self.name} document "
                             f"(versions .001.02 to .001.13)", source=source.name, line=1)
        ns = root.tag[1:].split("}")[0]
        reader = _Reader(ns, source.name, lines)
        message = root.find(reader.q(self.root))
        if message is None:
            raise ParseError(f"no <{self.root}> element", source=source.name, line=1)
        parts = [reader.part(item, self.message) for item in message.findall(reader.q(self.item))]
        if not parts:
            raise ParseError(f"no <{self.item}> element", source=source.name, line=1)
        info = StatementInfo(source=source.name, format=self.name)
        _check(parts, info)
        return StatementStream(info, iter([ln for part in parts for ln in part.lines]))


class _Reader:
    """Element helpers bound to one namespace and file."""

    def __init__(self, ns: str, source: str, lines: dict[Element, int]) -> None:
        self.ns = ns
        self.source = source
        self.lines = lines

    def q(self, path: str) -> str:
        return "/".join(f"{{{self.ns}}}{step}" for step in path.split("/"))

    def text(self, elem: Element | None, path: str) -> str | None:
        if elem is None:
            return None
        found = elem.find(self.q(path))
        if found is None or found.text is None:
            return None
        return found.text.strip() or None

    def line(self, elem: Element) -> int:
        return self.lines.get(elem, 0)

    def error(self, elem: Element, message: str, column: str) -> ParseError:
        return ParseError(message, source=self.source, line=self.line(elem), column=column)

    def amount(self, elem: Element, path: str, required: bool = True) -> int | None:
        node = elem.find(self.q(path))
        if node is None or not (node.text or "").strip():
            if required:
                raise self.error(elem, f"<{path}> is missing", path)
            return None
        text = node.text.strip()
        currency = node.get("Ccy", "VND")
        if currency != "VND":
            raise self.error(node, f"currency {currency}: only VND accounts are supported", path)
        if not _DECIMAL.match(text):
            raise self.error(node, f"'{text}' is not an amount", path)
        whole, _, decimals = text.partition(".")
        if decimals.strip("0"):
            raise self.error(node, f"'{text}' has decimals; VND amounts are whole đồng", path)
        try:
            return parse_vnd(whole, field=path)
        except InvalidAmount:
            raise self.error(node, f"'{text}' is not an amount", path) from None

    def moment(self, elem: Element, path: str) -> tuple[date | None, datetime | None]:
        """``<X><Dt>`` or ``<X><DtTm>`` → (day, aware moment or None)."""
        day_text = self.text(elem, f"{path}/Dt")
        stamp_text = self.text(elem, f"{path}/DtTm")
        try:
            if stamp_text:
                stamp = datetime.fromisoformat(stamp_text)
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=VN_FIXED)
                return stamp.astimezone(VN_TZ).date(), stamp
            if day_text:
                return date.fromisoformat(day_text[:10]), None
        except ValueError:
            raise self.error(elem, f"'{stamp_text or day_text}' is not an ISO date",
                             path) from None
        return None, None

    def account(self, item: Element) -> str | None:
        return self.text(item, "Acct/Id/IBAN") or self.text(item, "Acct/Id/Othr/Id")

    def part(self, item: Element, message: str) -> _Part:
        currency = self.text(item, "Acct/Ccy")
        if currency and currency != "VND":
            raise self.error(item, f"currency {currency}: only VND accounts are supported",
                             "Acct/Ccy")
        frm = self.text(item, "FrToDt/FrDtTm")
        to = self.text(item, "FrToDt/ToDtTm")
        try:
            start = _local_day(frm) if frm else None
            end = _local_day(to) if to else None
        except ValueError:
            raise self.error(item, f"'{frm} – {to}' is not a period", "FrToDt") from None
        opening = closing = None
        if message == "053":
            for bal in item.findall(self.q("Bal")):
                code = self.text(bal, "Tp/CdOrPrtry/Cd")
                value = self.amount(bal, "Amt")
                if self.text(bal, "CdtDbtInd") == "DBIT":
                    value = -value
                if code in ("OPBD", "PRCD") and opening is None:
                    opening = value
                elif code == "CLBD":
                    closing = value
        part = _Part(self.line(item), self.text(item, "Id") or "", self.account(item),
                     opening, closing, start, end)
        for entry in item.findall(self.q("Ntry")):
            part.lines.extend(self.entry_lines(entry))
        return part

    def entry_lines(self, entry: Element) -> Iterator[Line]:
        status = self.text(entry, "Sts") or self.text(entry, "Sts/Cd") or "BOOK"
        if status != "BOOK":
            return
        amount = self.amount(entry, "Amt")
        mark = self.text(entry, "CdtDbtInd")
        if mark not in ("CRDT", "DBIT"):
            raise self.error(entry, f"'{mark}' is neither CRDT nor DBIT", "CdtDbtInd")
        direction = CREDIT if mark == "CRDT" else DEBIT
        day, booked_at = self.moment(entry, "BookgDt")
        value_day, value_at = self.moment(entry, "ValDt")
        day = day or value_day
        if day is None:
            raise self.error(entry, "the entry has no booking or value date", "BookgDt")
        moment = value_at or booked_at
        details = [tx for d in entry.findall(self.q("NtryDtls"))
                   for tx in d.findall(self.q("TxDtls"))]
        entry_ref = self.text(entry, "AcctSvcrRef") or self.text(entry, "NtryRef")
        entry_memo = self.text(entry, "AddtlNtryInf") or ""
        amounts = [self.amount(tx, "AmtDtls/TxAmt/Amt", required=False)
                   or self.amount(tx, "Amt", required=False) for tx in details]
        if len(details) > 1 and None not in amounts and sum(amounts) == amount:
            for tx, tx_amount in zip(details, amounts, strict=True):
                yield self._line(tx, tx_amount, direction, day, moment, entry_ref, entry_memo)
            return
        if details:
            memo = " | ".join(m for m in (self._memo(tx) for tx in details) if m)
            first = details[0]
            yield Line(self.line(entry), day, amount, direction, moment,
                       self._ref(first) or entry_ref, memo or entry_memo,
                       *self._party(first, direction))
        else:
            yield Line(self.line(entry), day, amount, direction, moment, entry_ref,
                       entry_memo, None, None)

    def _line(self, tx: Element, amount: int, direction: str, day: date,
              moment: datetime | None, entry_ref: str | None, entry_memo: str) -> Line:
        return Line(self.line(tx), day, amount, direction, moment,
                    self._ref(tx) or entry_ref, self._memo(tx) or entry_memo,
                    *self._party(tx, direction))

    def _memo(self, tx: Element) -> str:
        parts = [(u.text or "").strip() for u in tx.findall(self.q("RmtInf/Ustrd"))]
        parts += [r for r in [self.text(tx, "RmtInf/Strd/CdtrRefInf/Ref")] if r]
        memo = " ".join(p for p in parts if p)
        return memo or self.text(tx, "AddtlTxInf") or ""

    def _ref(self, tx: Element) -> str | None:
        for path in ("Refs/AcctSvcrRef", "Refs/TxId", "Refs/EndToEndId"):
            value = self.text(tx, path)
            if value and value.upper() != "NOTPROVIDED":
                return value
        return None

    def _party(self, tx: Element, direction: str) -> tuple[str | None, str | None]:
        who = "Dbtr" if direction == CREDIT else "Cdtr"
        name = (self.text(tx, f"RltdPties/{who}/Nm")
                or self.text(tx, f"RltdPties/{who}/Pty/Nm"))
        account = (self.text(tx, f"RltdPties/{who}Acct/Id/IBAN")
                   or self.text(tx, f"RltdPties/{who}Acct/Id/Othr/Id"))
        return name, account


def _local_day(stamp: str) -> date:
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(VN_TZ).date()


def _check(parts: list[_Part], info: StatementInfo) -> None:
    """Per-statement balance, continuity between statements, one account per file."""
    name = info.source
    accounts = {p.account for p in parts if p.account}
    if len(accounts) > 1:
        raise ParseError(f"the file holds statements for several accounts "
                         f"({', '.join(sorted(accounts))}); import one account per file",
                         source=name)
    previous: _Part | None = None
    for part in parts:
        if part.opening is not None and part.closing is not None:
            moved = sum(ln.amount if ln.direction == CREDIT else -ln.amount
                        for ln in part.lines)
            if part.opening + moved != part.closing:
                raise ParseError(
                    f"statement {part.ident}: opening {format_vnd(part.opening)} + booked "
                    f"entries {format_vnd(moved)} ≠ closing {format_vnd(part.closing)} "
                    f"(difference {format_vnd(part.closing - part.opening - moved)})",
                    source=name, line=part.line, column="Bal")
        if (previous is not None and previous.closing is not None
                and part.opening is not None and part.opening != previous.closing):
            raise ParseError(f"statement {part.ident} opens at {format_vnd(part.opening)} but "
                             f"the previous one closed at {format_vnd(previous.closing)}: a "
                             "statement is missing", source=name, line=part.line, column="Bal")
        previous = part
    days = [ln.posting_date for p in parts for ln in p.lines]
    info.account_number = next(iter(accounts), None)
    info.opening_balance = parts[0].opening
    info.closing_balance = parts[-1].closing
    starts = [p.start for p in parts if p.start]
    ends = [p.end for p in parts if p.end]
    info.period_start = min(starts) if starts else (min(days) if days else None)
    info.period_end = max(ends) if ends else (max(days) if days else None)
