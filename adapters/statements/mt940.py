"""SWIFT MT940 customer statements (one or several statements per file).

The fields read, with their SWIFT notation (``n`` digits, ``a`` letters, ``c``
alphanumeric, ``x`` any character, ``d`` decimal with a comma, ``!`` fixed length,
``[ ]`` optional):

==========  ===============================================================================
``:20:``    transaction reference number ``16x`` — starts a statement
``:25:``    account identification ``35x`` (``account`` or ``BIC/account``)
``:28C:``   statement number / sequence number ``5n[/5n]``
``:60F:``   opening balance ``1!a6!n3!a15d`` (D/C, YYMMDD, currency, amount); ``:60M:`` when
            the statement continues an earlier page
``:61:``    statement line ``6!n[4!n]2a[1!a]15d1!a3!c16x[//16x]`` + ``[34x]`` on a second line:
            value date, entry date, mark (``C`` credit, ``D`` debit, ``RC`` reversal of a
            credit = money out, ``RD`` reversal of a debit = money in), funds code, amount,
            transaction type, reference for the account owner, bank's reference, details
``:86:``    information to the account owner ``6*65x`` (the memo), after its ``:61:``
``:62F:``   closing balance (``:62M:`` intermediate), same layout as ``:60F:``
``:64:``    closing available balance (read, not checked)
==========  ===============================================================================

Amounts are written ``1234567,`` or ``1234567,00``; VND has no minor unit, so any non-zero
decimals are refused. Each statement must balance (opening + lines = closing) and follow
on from the previous one in the file (its opening = the previous closing).

More information: SWIFT MT940 (Category 9 User Handbook); the field layouts above are the
ones every public MT940 parser agrees on (e.g. WoLpH/mt940 ``mt940/tags.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from adapters.statements.base import Adapter
from adapters.statements.source import Source
from feepay.exceptions import InvalidAmount, ParseError
from feepay.money import format_vnd, parse_vnd
from feepay.statements import CREDIT, DEBIT, Line, StatementInfo, StatementStream

_TAG = re.compile(r"^:(?P<tag>\d{2}[A-Z]?):(?P<value>.*)$")
_BALANCE = re.compile(r"""
    ^(?P<mark>[CD])                # 1!a  D/C mark
    (?P<date>\d{6})                # 6!n  date YYMMDD
    (?P<currency>[A-Z]{3})         # 3!a  currency
    (?P<amount>\d[\d]*,\d*)$       # 15d  amount, decimal comma
""", re.VERBOSE)
_LINE = re.compile(r"""
    ^(?P<value>\d{6})              # 6!n  value date YYMMDD
    (?P<entry>\d{4})?              # [4!n] entry (booking) date MMDD
    (?P<mark>RC|RD|C|D)            # 2a   debit/credit mark, R = reversal
    (?P<funds>[A-Z])?              # [1!a] funds code (3rd letter of the currency)
    (?P<amount>\d[\d]*,\d*)        # 15d  amount, decimal comma
    (?P<type>[A-Z][A-Z0-9]{3})     # 1!a3!c transaction type identification code
    (?P<customer>.*?)              # 16x  reference for the account owner
    (?://(?P<bank>.{1,16}))?$      # [//16x] reference of the account servicing institution
""", re.VERBOSE)


@dataclass
class _Statement:
    line: int
    reference: str = ""
    account: str | None = None
    number: str | None = None
    opening: tuple[int, date, str] | None = None
    closing: tuple[int, date, str] | None = None
    closing_line: int = 0
    lines: list[Line] = field(default_factory=list)


def _amount(text: str, source: str, line: int, tag: str) -> int:
    """``1234567,`` / ``1234567,00`` → 1234567; decimals must be zero (VND)."""
    whole, _, decimals = text.partition(",")
    if decimals.strip("0"):
        raise ParseError(f"'{text}' has decimals; VND amounts are whole đồng", source=source,
                         line=line, column=tag)
    try:
        return parse_vnd(whole, field=tag)
    except InvalidAmount:
        raise ParseError(f"'{text}' is not an amount", source=source, line=line,
                         column=tag) from None


def _yymmdd(text: str, source: str, line: int, tag: str) -> date:
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise ParseError(f"'{text}' is not a date (YYMMDD)", source=source, line=line,
                         column=tag) from None


def _entry_date(value_date: date, mmdd: str, source: str, line: int) -> date:
    """The booking date MMDD takes the value date's year, across a new year if needed."""
    month, day = int(mmdd[:2]), int(mmdd[2:])
    year = value_date.year
    if month - value_date.month > 6:
        year -= 1
    elif value_date.month - month > 6:
        year += 1
    try:
        return date(year, month, day)
    except ValueError:
        raise ParseError(f"'{mmdd}' is not an entry date (MMDD)", source=source, line=line,
                         column=":61:") from None


def _fields(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, tag, value with continuation lines joined by newlines)."""
    tag, value, start = None, [], 0
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if stripped.startswith(("{1:", "{2:", "{3:", "{4:", "{5:")) and not tag:
            stripped = re.sub(r"^(\{[1-3]:[^}]*\})*\{4:", "", stripped)
            if not stripped:
                continue
            line = stripped
        if stripped in ("-}", "-", "}") or stripped.startswith(("-}{5:", "{5:")):
            continue
        match = _TAG.match(line)
        if match:
            if tag:
                yield start, tag, "\n".join(value)
            tag, value, start = match["tag"], [match["value"]], no
        elif tag:
            value.append(line)
        elif stripped:
            raise ParseError(f"text before the first tag: '{stripped[:40]}'", line=no)
    if tag:
        yield start, tag, "\n".join(value)


class Mt940(Adapter):
    name = "mt940"
    kind = "statement"
    title = "SWIFT MT940 customer statement"

    def identify(self, source: Source) -> bool:
        if source.kind != "text":
            return False
        head = source.head_text()[:20000]
        return (re.search(r"^:20:", head, re.MULTILINE) is not None
                and re.search(r"^:25:", head, re.MULTILINE) is not None
                and re.search(r"^:60[FM]:", head, re.MULTILINE) is not None)

    def read(self, source: Source) -> StatementStream:
        source.require("text", what="an MT940 statement")
        statements = self._statements(source)
        if not statements:
            raise ParseError("no MT940 statement (no :20: tag) in the file", source=source.name)
        info = StatementInfo(source=source.name, format=self.name)
        self._check(statements, info)
        return StatementStream(info, iter([ln for st in statements for ln in st.lines]))

    def _statements(self, source: Source) -> list[_Statement]:
        name = source.name
        with source.open_text() as fh:
            try:
                text = fh.read()
            except UnicodeDecodeError as exc:
                raise ParseError(f"not valid {source.encoding} text at byte {exc.start}",
                                 source=name) from None
        out: list[_Statement] = []
        pending: Line | None = None
        for no, tag, value in _fields_checked(text, name):
            if tag == "20":
                pending = self._flush(out, pending)
                out.append(_Statement(no, reference=value.strip()))
                continue
            if not out:
                raise ParseError(f"tag :{tag}: before the first :20:", source=name, line=no)
            st = out[-1]
            if tag == "25":
                st.account = value.strip()
            elif tag == "28C":
                st.number = value.strip()
            elif tag in ("60F", "60M"):
                st.opening = self._balance(value, name, no, tag)
            elif tag == "61":
                pending = self._flush(out, pending)
                pending = self._line(value, name, no)
            elif tag == "86":
                if pending is not None:
                    pending = pending._replace(memo=value)
                    pending = self._flush(out, pending)
            elif tag in ("62F", "62M"):
                pending = self._flush(out, pending)
                st.closing = self._balance(value, name, no, tag)
                st.closing_line = no
        self._flush(out, pending)
        return out

    @staticmethod
    def _flush(out: list[_Statement], pending: Line | None) -> None:
        if pending is not None:
            out[-1].lines.append(pending)
        return None

    @staticmethod
    def _balance(value: str, source: str, line: int, tag: str) -> tuple[int, date, str]:
        match = _BALANCE.match(value.strip())
        if not match:
            raise ParseError(f"'{value.strip()}' is not a balance (D/C, YYMMDD, currency, "
                             "amount)", source=source, line=line, column=f":{tag}:")
        amount = _amount(match["amount"], source, line, f":{tag}:")
        day = _yymmdd(match["date"], source, line, f":{tag}:")
        return (-amount if match["mark"] == "D" else amount), day, match["currency"]

    @staticmethod
    def _line(value: str, source: str, line: int) -> Line:
        first, _, details = value.partition("\n")
        match = _LINE.match(first.strip())
        if not match:
            raise ParseError(f"'{first.strip()}' is not a statement line (value date, mark, "
                             "amount, type, reference)", source=source, line=line,
                             column=":61:")
        value_date = _yymmdd(match["value"], source, line, ":61:")
        posting = (_entry_date(value_date, match["entry"], source, line) if match["entry"]
                   else value_date)
        amount = _amount(match["amount"], source, line, ":61:")
        # C credit, D debit; RC = reversal of a credit (money leaves), RD = reversal of a debit
        direction = CREDIT if match["mark"] in ("C", "RD") else DEBIT
        customer = match["customer"].strip()
        bank = (match["bank"] or "").strip()
        ref = bank or (customer if customer and customer.upper() != "NONREF" else "")
        return Line(line, posting, amount, direction, None, ref or None,
                    details.strip(), None, None)

    @staticmethod
    def _check(statements: list[_Statement], info: StatementInfo) -> None:
        name = info.source
        accounts = {st.account for st in statements if st.account}
        if len(accounts) > 1:
            raise ParseError(f"the file holds statements for several accounts "
                             f"({', '.join(sorted(accounts))}); import one account per file",
                             source=name)
        previous: _Statement | None = None
        for st in statements:
            if st.opening is None or st.closing is None:
                raise ParseError(f"statement {st.reference or st.number} has no "
                                 f"{':60F:' if st.opening is None else ':62F:'} balance",
                                 source=name, line=st.line)
            if st.opening[2] != "VND" or st.closing[2] != "VND":
                raise ParseError(f"currency {st.opening[2]}: only VND accounts are supported",
                                 source=name, line=st.line, column=":60F:")
            moved = sum(ln.amount if ln.direction == CREDIT else -ln.amount for ln in st.lines)
            if st.opening[0] + moved != st.closing[0]:
                diff = st.closing[0] - st.opening[0] - moved
                raise ParseError(
                    f"statement {st.reference}: opening {format_vnd(st.opening[0])} + lines "
                    f"{format_vnd(moved)} ≠ closing {format_vnd(st.closing[0])} (difference "
                    f"{format_vnd(diff)})", source=name, line=st.closing_line,
                    column=":62F:")
            if previous is not None and st.opening[0] != previous.closing[0]:
                raise ParseError(
                    f"statement {st.reference} opens at {format_vnd(st.opening[0])} but the "
                    f"previous one closed at {format_vnd(previous.closing[0])}: a statement "
                    "is missing", source=name, line=st.line, column=":60F:")
            previous = st
        first, last = statements[0], statements[-1]
        info.account_number = next(iter(accounts), None)
        info.currency = "VND"
        info.opening_balance = first.opening[0]
        info.closing_balance = last.closing[0]
        days = [ln.posting_date for st in statements for ln in st.lines]
        info.period_start = min(days) if days else first.opening[1]
        info.period_end = max([last.closing[1], *days])


def _fields_checked(text: str, source: str) -> Iterator[tuple[int, str, str]]:
    try:
        yield from _fields(text)
    except ParseError as exc:
        raise ParseError(exc.message, source=source, line=exc.line) from None
