"""Money and time: VND as ``int``, the Vietnamese time zone, business days.

VND has no minor unit (ISO 4217 exponent 0), so every amount is a whole number of đồng
held in an ``int`` — in Python and in the database (BIGINT). :func:`parse_vnd` is the one
path from text to money and refuses anything ambiguous; :func:`format_vnd` prints
``1.234.567 ₫`` as Vietnamese readers expect.

>>> parse_vnd("1.234.567")
1234567
>>> parse_vnd("1,234,567 đ")
1234567
>>> format_vnd(1234567)
'1.234.567 ₫'
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from feepay.exceptions import InvalidAmount, ValidationError

VND = int
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_VND = 10**15  # far above any fee; guards against pasted account numbers

_GROUPED = re.compile(r"^\d{1,3}([.,\s\u00a0])\d{3}(\1\d{3})*$")
_PLAIN = re.compile(r"^\d+$")
_SUFFIX = re.compile(r"\s*(₫|đ|Đ|vnd|VND|vnđ|VNĐ|dong|đồng)$")


def parse_vnd(text: str | int, *, field: str = "amount") -> VND:
    """Parse a VND amount written with ``.``, ``,`` or space thousands separators.

    A trailing ``,00``/``.00`` (zero decimals, as some bank exports print) is accepted;
    any other decimal part, mixed separators, or a group of the wrong size is refused
    because it cannot be read without guessing.

    Raises:
        InvalidAmount: naming ``field`` and the offending text.
    """
    if isinstance(text, bool):
        raise InvalidAmount(f"{text!r} is not an amount", field=field)
    if isinstance(text, int):
        return _check_range(text, field, text)
    raw = text
    s = _SUFFIX.sub("", str(text).strip()).strip()
    negative = s.startswith("-")
    if negative or s.startswith("+"):
        s = s[1:].strip()
    s = re.sub(r"[.,]00$", "", s) if re.search(r"\d[.,]00$", s) and not _GROUPED.match(s) else s
    if _PLAIN.match(s):
        value = int(s)
    elif _GROUPED.match(s):
        value = int(re.sub(r"\D", "", s))
    else:
        raise InvalidAmount(f"'{raw}' is not an amount", field=field)
    return _check_range(-value if negative else value, field, raw)


def _check_range(value: int, field: str, raw: object) -> int:
    if abs(value) >= MAX_VND:
        raise InvalidAmount(f"'{raw}' is too large to be an amount", field=field)
    return value


def format_vnd(amount: VND, *, symbol: bool = True) -> str:
    """``1234567`` → ``'1.234.567 ₫'`` (dot thousands, symbol after, Vietnamese style)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("amounts are int VND")
    body = f"{abs(amount):,}".replace(",", ".")
    sign = "-" if amount < 0 else ""
    return f"{sign}{body} ₫" if symbol else f"{sign}{body}"


def now_utc() -> datetime:
    """The current time, aware, in UTC (the storage form)."""
    return datetime.now(UTC)


def require_aware(value: datetime, field: str = "datetime") -> datetime:
    """Refuse naive datetimes: a time without a zone is ambiguous by 7 hours here."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError("datetime must be timezone-aware", field=field)
    return value


def local_day(moment: datetime, cutoff: time | None = None) -> date:
    """The business day of ``moment`` in Asia/Ho_Chi_Minh.

    With a ``cutoff`` (a local time such as 22:00), anything at or after it belongs to
    the next business day — how banks post late-evening transfers.
    """
    local = require_aware(moment).astimezone(VN_TZ)
    if cutoff is not None and local.time() >= cutoff:
        return local.date() + timedelta(days=1)
    return local.date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a local calendar day."""
    start = datetime.combine(day, time(0), VN_TZ)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def format_date(day: date | datetime) -> str:
    """dd/mm/yyyy, the Vietnamese date form (local time for datetimes)."""
    if isinstance(day, datetime):
        day = require_aware(day).astimezone(VN_TZ).date()
    return day.strftime("%d/%m/%Y")
