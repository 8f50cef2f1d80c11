"""Money is int VND; text amounts are parsed without guessing; dates in Vietnamese form."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feepay import money
from feepay.exceptions import InvalidAmount, ValidationError


def test_doctests() -> None:
    assert doctest.testmod(money).failed == 0


@pytest.mark.parametrize(("text", "value"), [
    ("1.234.567", 1234567), ("1,234,567", 1234567), ("1 234 567 đ", 1234567),
    ("50000", 50000), ("50.000 ₫", 50000), ("-12.000", -12000), ("12.000,00", 12000),
    ("2,308,471", 2308471), ("0", 0), ("1.000 VND", 1000),
])
def test_parse_vnd(text: str, value: int) -> None:
    assert money.parse_vnd(text) == value


@pytest.mark.parametrize("text", ["12.5OO", "1.23", "1,2345", "1.234,567", "abc", "",
                                  "12.000,50", "1e5", "1.234.56", "12..000"])
def test_parse_vnd_refuses_ambiguous(text: str) -> None:
    with pytest.raises(InvalidAmount) as exc:
        money.parse_vnd(text, field="Ghi có")
    assert exc.value.field == "Ghi có"
    assert text in str(exc.value) or text == ""


@given(st.integers(-(10**12), 10**12))
def test_format_then_parse_roundtrip(n: int) -> None:
    assert money.parse_vnd(money.format_vnd(n)) == n


def test_format_vnd() -> None:
    assert money.format_vnd(1234567) == "1.234.567 ₫"
    with pytest.raises(TypeError):
        money.format_vnd(1.5)  # type: ignore[arg-type]


def test_local_day_and_cutoff() -> None:
    # 16:59:59 UTC = 23:59:59 local; 17:00 UTC = 00:00 next local day
    assert money.local_day(datetime(2025, 11, 3, 16, 59, 59, tzinfo=UTC)) == date(2025, 11, 3)
    assert money.local_day(datetime(2025, 11, 3, 17, 0, tzinfo=UTC)) == date(2025, 11, 4)
    late = datetime(2025, 11, 3, 15, 30, tzinfo=UTC)  # 22:30 local
    assert money.local_day(late, cutoff=time(22, 0)) == date(2025, 11, 4)
    with pytest.raises(ValidationError):
        money.local_day(datetime(2025, 1, 1))
    start, end = money.day_bounds(date(2025, 11, 3))
    assert start == datetime(2025, 11, 2, 17, 0, tzinfo=UTC)
    assert (end - start).total_seconds() == 86400
    assert money.format_date(date(2025, 7, 1)) == "01/07/2025"
