"""Reading one spreadsheet/CSV cell: header labels, amounts, dates and times.

Cells arrive as python-calamine gives them (``str``, ``float``, ``int``, ``bool``,
``date``, ``datetime``) or as CSV text. Every failure becomes a
:class:`~feepay.exceptions.ParseError` naming the file, the row, the column header and the
offending text, e.g. ``vcb.xlsx, row 17, column 'Ghi có': '12.5OO' is not an amount``.

>>> fold("Số tiền ghi có/ Credit")
'so tien ghi co credit'
>>> sorted(label_parts("Số tiền ghi có/\\nCredit"))
['credit', 'so tien ghi co', 'so tien ghi co credit']
>>> read_amount("1,234,567", source="f.csv", row=2, column="Credit")
1234567
>>> read_date_time("03/11/2025 09:30", source="f.csv", row=2, column="Date")[0]
datetime.date(2025, 11, 3)
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from feepay.exceptions import InvalidAmount, ParseError
from feepay.money import parse_vnd
from feepay.statements import VN_FIXED

_TRANSLIT = str.maketrans({"đ": "d", "Đ": "D"})
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_SPLIT = re.compile(r"[/\n\r()\[\]|]+")
_DMY = re.compile(r"(?<!\d)(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})(?!\d)"
                  r"(?:[ T,\-]*(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_YMD = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)"
                  r"(?:[ T]*(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_EXCEL_EPOCH = datetime(1899, 12, 30)


@lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """Lower-case, no diacritics, words separated by single spaces: for matching labels."""
    text = unicodedata.normalize("NFKD", str(text).translate(_TRANSLIT))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return _NON_ALNUM.sub(" ", text).strip()


def label_parts(text: str) -> frozenset[str]:
    """The folded forms a header cell answers to: whole, and each bilingual part."""
    whole = fold(text)
    parts = {fold(p) for p in _SPLIT.split(str(text))}
    parts.add(whole)
    parts.discard("")
    return frozenset(parts)


def to_text(value: Any) -> str:
    """A cell as text (numbers without a spurious ``.0``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@lru_cache(maxsize=16384)
def _vnd(text: str) -> int:
    return parse_vnd(text)


def vnd_text(text: str, source: str, row: int, column: str) -> int:
    """A non-empty amount text starting with a digit (the CSV fast path of read_amount)."""
    try:
        return _vnd(text)
    except InvalidAmount as exc:
        raise ParseError(exc.message if "'" in exc.message else f"'{text}' is not an amount",
                         source=source, line=row, column=column) from None


def read_amount(value: Any, *, source: str, row: int, column: str,
                signed: bool = False) -> int | None:
    """An amount cell as int VND; ``None`` when empty. ``(1,000)`` means −1000."""
    if value.__class__ is str:  # the common case first: CSV text
        text = value.strip()
        if not text:
            return None
        if not text[0].isdigit():
            value = text  # signs, brackets, dashes: the general path below
        else:
            try:
                return _vnd(text)
            except InvalidAmount as exc:
                raise ParseError(exc.message if "'" in exc.message
                                 else f"'{text}' is not an amount",
                                 source=source, line=row, column=column) from None
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParseError(f"'{value}' is not an amount", source=source, line=row, column=column)
    if isinstance(value, int):
        amount = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ParseError(f"'{value!r}' is not a whole number of đồng", source=source,
                             line=row, column=column)
        amount = int(value)
    else:
        text = str(value).strip()
        if not text or text in ("-", "—"):
            return None
        negative = text.startswith("(") and text.endswith(")")
        try:
            amount = _vnd(text[1:-1].strip() if negative else text)
        except InvalidAmount as exc:
            raise ParseError(exc.message if "'" in exc.message else f"'{text}' is not an amount",
                             source=source, line=row, column=column) from None
        if negative:
            amount = -amount
    if amount < 0 and not signed:
        amount = -amount  # a debit column printed with a minus sign
    return amount


@lru_cache(maxsize=4096)
def _date_from_text(text: str) -> tuple[date, tuple[int, int, int] | None] | None:
    match = _DMY.search(text)
    if match:
        d, m, y, hh, mm, ss = match.groups()
    else:
        match = _YMD.search(text)
        if not match:
            return None
        y, m, d, hh, mm, ss = match.groups()
    try:
        day = date(int(y), int(m), int(d))
        clock = (int(hh), int(mm), int(ss or 0)) if hh is not None else None
        if clock is not None:
            time(*clock)
    except ValueError:
        raise ValueError(text) from None
    return day, clock


@lru_cache(maxsize=4096)
def _day(text: str) -> date | None:
    try:
        return date(int(text[6:10]), int(text[3:5]), int(text[0:2]))
    except ValueError:
        return None


def fast_dmy(text: str) -> tuple[date, datetime | None] | None:
    """``dd/mm/yyyy``, ``dd/mm/yyyy HH:MM`` or ``dd/mm/yyyy HH:MM:SS`` exactly; else None."""
    if not text[:2].isdigit() or not text[3:5].isdigit() or not text[6:10].isdigit():
        return None
    day = _day(text[:10])
    if day is None:
        return None
    n = len(text)
    if n == 10:
        return day, None
    if text[10] != " " or n not in (16, 19) or text[13] != ":":
        return None
    try:
        hh, mm = int(text[11:13]), int(text[14:16])
        ss = int(text[17:19]) if n == 19 and text[16] == ":" else (0 if n == 16 else -1)
        return day, datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=VN_FIXED)
    except ValueError:
        return None


def nearest_second(moment: datetime) -> datetime:
    """An Excel date cell's moment to the nearest second.

    Spreadsheets store times as binary fractions of a day, so a reader may hand back
    09:05:09.999 for 09:05:10; bank exports print whole seconds, and the time is part of the
    line fingerprint, so it is rounded, not cut.
    """
    micro = moment.microsecond
    if not micro:
        return moment
    return moment.replace(microsecond=0) + (_ONE_SECOND if micro >= 500_000 else _NO_TIME)


_ONE_SECOND = timedelta(seconds=1)
_NO_TIME = timedelta(0)


def read_date_time(value: Any, *, source: str, row: int,
                   column: str) -> tuple[date, datetime | None]:
    """A date cell: the day, and the local moment (aware, Vietnam time) when a time is given.

    Accepts ``dd/mm/yyyy`` (also ``-`` or ``.``) with optional ``HH:MM[:SS]``, ISO dates,
    Excel date cells and Excel serial numbers. A date followed by other text (some banks
    print the document number under the date) is fine.
    """
    if isinstance(value, datetime):
        value = nearest_second(value)
        moment = value if value.time() != time(0) else None
        return value.date(), moment.replace(tzinfo=VN_FIXED) if moment else None
    if isinstance(value, date):
        return value, None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 1 <= value < 2958466:
            # An Excel serial is a binary fraction of a day: 09:05:10 can come back as
            # 09:05:09.99999…; round to the second (not truncate) — the time is part of
            # the line fingerprint.
            moment = _EXCEL_EPOCH + timedelta(seconds=round(float(value) * 86400))
            return (moment.date(),
                    moment.replace(tzinfo=VN_FIXED) if moment.time() != time(0) else None)
        raise ParseError(f"'{to_text(value)}' is not a date", source=source, line=row,
                         column=column)
    text = value.strip() if isinstance(value, str) else to_text(value).strip()
    if len(text) >= 10 and text[2] == "/" and text[5] == "/":  # the usual dd/mm/yyyy[ HH:MM[:SS]]
        fast = fast_dmy(text)
        if fast is not None:
            return fast
    try:
        parsed = _date_from_text(text) if text else None
    except ValueError:
        raise ParseError(f"'{text}' is not a valid date", source=source, line=row,
                         column=column) from None
    if parsed is None:
        raise ParseError(f"'{text}' is not a date (dd/mm/yyyy)" if text else
                         "the date is empty", source=source, line=row, column=column)
    day, clock = parsed
    if clock is None:
        return day, None
    return day, datetime(day.year, day.month, day.day, *clock, tzinfo=VN_FIXED)


def find_dates(text: str) -> list[date]:
    """Every date written in a text (for periods like 'Từ 01/11/2025 đến 03/11/2025')."""
    out = []
    for match in _DMY.finditer(text):
        d, m, y = match.groups()[:3]
        try:
            out.append(date(int(y), int(m), int(d)))
        except ValueError:
            continue
    if not out:
        for match in _YMD.finditer(text):
            y, m, d = match.groups()[:3]
            try:
                out.append(date(int(y), int(m), int(d)))
            except ValueError:
                continue
    return out
