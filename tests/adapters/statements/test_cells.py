"""Cell readers keep a line's time to the second: the seconds are part of the fingerprint."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from openpyxl.utils.datetime import to_excel

from adapters.statements import adapters
from adapters.statements.cells import fast_dmy, nearest_second, read_date_time


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
       .map(lambda d: d.replace(microsecond=0)))
def test_excel_serial_number_rounds_to_the_exact_second(moment: datetime) -> None:
    """A serial is a binary fraction of a day (09:16:53 is 46115.38672453703…, i.e.
    09:16:52.99999…): it must read back as 09:16:53, not be cut to 09:16:52."""
    serial = to_excel(moment)  # as a spreadsheet writer stores it
    day, at = read_date_time(serial, source="x.csv", row=2, column="Ngày")
    assert day == moment.date()
    if moment.time() == datetime.min.time():
        assert at is None
    else:
        assert at is not None and at.replace(tzinfo=None) == moment


def test_known_truncation_case() -> None:
    _, at = read_date_time(46115.38672453703, source="x.csv", row=2, column="Ngày")
    assert at is not None and (at.hour, at.minute, at.second) == (9, 16, 53)


def test_text_times_keep_their_seconds() -> None:
    parsed = fast_dmy("03/11/2025 09:05:10")
    assert parsed is not None and parsed[1] is not None and parsed[1].second == 10
    parsed = fast_dmy("03/11/2025 09:05")
    assert parsed is not None and parsed[1] is not None and parsed[1].second == 0
    _, at = read_date_time("03-11-2025 09:05:40", source="x.csv", row=2, column="Ngày")
    assert at is not None and at.second == 40


def test_date_cells_round_to_the_nearest_second() -> None:
    """A reader may give 09:05:09.999 for a cell showing 09:05:10: rounded, not cut."""
    assert nearest_second(datetime(2025, 11, 3, 9, 5, 9, 999_000)) == datetime(2025, 11, 3, 9,
                                                                               5, 10)
    assert nearest_second(datetime(2025, 11, 3, 9, 5, 10, 1_000)) == datetime(2025, 11, 3, 9,
                                                                              5, 10)
    assert nearest_second(datetime(2025, 11, 3, 23, 59, 59, 600_000)) == datetime(2025, 11, 4)
    _, at = read_date_time(datetime(2025, 11, 3, 9, 5, 39, 998_000), source="x.xlsx", row=2,
                           column="Ngày")
    assert at is not None and (at.minute, at.second, at.microsecond) == (5, 40, 0)


def test_xlsx_date_cell_with_milliseconds_reads_to_the_second(tmp_path: Path) -> None:
    """python-calamine hands back milliseconds (09:05:09.999): the line says 09:05:10."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["NGÂN HÀNG TMCP NGOẠI THƯƠNG VIỆT NAM"])
    ws.append(["Số tài khoản/Account number:", "9990001234567"])
    ws.append(["Ngày giao dịch", "Số tham chiếu", "Số tiền ghi nợ", "Số tiền ghi có", "Mô tả"])
    ws.append([datetime(2025, 11, 3, 9, 5, 9, 999_000), "", None, 50_000, "FP nop phi"])
    path = tmp_path / "vcb.xlsx"
    wb.save(path)
    (line,) = adapters()["vietcombank"].parse(path).lines
    assert line.value_at is not None
    assert (line.value_at.minute, line.value_at.second, line.value_at.microsecond) == (5, 10, 0)
