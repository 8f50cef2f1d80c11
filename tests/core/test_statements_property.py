"""Property: any split of a day's lines into overlapping files, imported in any order (and
some files twice), leaves exactly the day's lines stored — identical lines included.

Lines carry seconds, several in one minute, and files are cut between two different
value times — also inside a minute (09:05:10 | 09:05:40), as an export by time range is:
a file holds all copies of a line that occurs twice in the same second (see the
fingerprint rule in feepay/statements.py). Some lines sit at ``HH:MM:00``, whose
fingerprint has the minute-only form.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from feepay.money import VN_TZ
from feepay.statements import Line, StatementInfo, StatementStream
from feepay.storage.tables_statements import StatementImportRow, StatementLineRow

DAY = date(2025, 11, 3)
MEMOS = ("FP7K3MQ9XA4C nop le phi", "Nộp phí chứng thực", "Phi SMS Banking", "CT DEN:12 fp7k")

raw_line = st.tuples(st.tuples(st.integers(0, 2),              # minute after 09:05
                               st.sampled_from((0, 10, 40))),  # second
                     st.sampled_from((2_000, 8_000, 10_000)),  # amount
                     st.sampled_from(("credit", "debit")),
                     st.sampled_from(MEMOS),
                     st.sampled_from((None, "FT25307000001")))  # bank ref or none


@st.composite
def split_day(draw: st.DrawFn) -> tuple[list[tuple], list[list[tuple]]]:
    lines = sorted(draw(st.lists(raw_line, min_size=1, max_size=25)), key=lambda t: t[0])
    changes = [i for i in range(1, len(lines)) if lines[i][0] != lines[i - 1][0]]
    cuts = sorted(draw(st.sets(st.sampled_from(changes), max_size=len(changes)))
                  if changes else set())
    bounds = [0, *cuts, len(lines)]
    segments = [lines[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    files = []
    for i in range(len(segments)):
        extend = draw(st.integers(0, 2))  # overlap with the next 0–2 segments
        files.append([x for seg in segments[i:i + 1 + extend] for x in seg])
    files += draw(st.lists(st.sampled_from(files), max_size=2))  # some files again
    return lines, draw(st.permutations(files))


# the reviewer's case: two real credits in one minute, in two files that do not overlap
_CREDIT = (2_000, "credit", MEMOS[0], None)
REVIEWED = ([((0, 10), *_CREDIT), ((0, 40), *_CREDIT)],
            [[((0, 40), *_CREDIT)], [((0, 10), *_CREDIT)]])


def _stream(rows: list[tuple], n: int) -> StatementStream:
    lines = iter([Line(k + 1, DAY, amount, direction,
                       datetime.combine(DAY, datetime.min.time(), VN_TZ)
                       + timedelta(hours=9, minutes=5 + minute, seconds=second), ref, memo)
                  for k, ((minute, second), amount, direction, memo, ref) in enumerate(rows)])
    return StatementStream(StatementInfo(f"part{n}.csv", "test"), lines)


def _setup(fp) -> int:  # noqa: ANN001
    fp.units.add("40", "Tỉnh Nghệ An (thử nghiệm)", "province")
    return fp.accounts.register("40", "970436", "9990001234567", "DON VI THU PHI TEST").id


def test_overlapping_splits_store_exactly_the_days_lines(fp) -> None:  # noqa: ANN001
    account = _setup(fp)

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(split_day())
    @example(REVIEWED)
    def check(case: tuple[list[tuple], list[list[tuple]]]) -> None:
        lines, files = case
        with fp.db.session() as s:
            s.execute(delete(StatementLineRow))
            s.execute(delete(StatementImportRow))
        for n, rows in enumerate(files):
            fp.statements.import_stream(_stream(rows, n), account, file_name=f"part{n}.csv",
                                        file_sha256=f"{n:064d}", file_size=len(rows))
        stored = Counter(
            ((r["value_at"].astimezone(VN_TZ).minute - 5, r["value_at"].second), r["amount"],
             r["direction"], r["memo_raw"], r["bank_ref"]) for r in fp.statements.lines(account))
        assert stored == Counter((slot, a, d, m, ref) for slot, a, d, m, ref in lines)

    check()
