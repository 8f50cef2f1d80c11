"""The reconciliation engine: one account, one business day, no database, no clock.

:func:`reconcile_day` takes a :class:`~reconcile.models.DayInput` — the expected payments
(references), the reported ones (callbacks) and the settled money (statement credits and
gateway settlement batches) — and returns a :class:`~reconcile.models.DayResult`: matches,
mismatches with their evidence, the reference states to move, and the day's sums.

A worked example (account 7, Monday 1 December; reference A owes 50.000 ₫, B 30.000 ₫,
C 100.000 ₫, D 20.000 ₫, E 10.000 ₫)::

    statement line                               callback         outcome
    L1  50.000 "MBVCB.88 FPA… NGUYEN VAN X"      A 50.000 (VNPAY) exact          A settled
    L2  80.000 "CK FPA… FPB…"  (A already paid)  —                ambiguous      held
    L3  60.000 "fpc… thanh toan 1/2"             —                underpaid      C partially paid
    L4  40.000 "FPC… lan 2" (next day)           —                split (L3+L4)  C settled
    L5  20.000 "nop le phi FPD…" (typo: FPD…X)   —                unknown        suggests D
    L6  10.000 "FPE…"                            —                exact +        E settled,
                                                                  money_no_callback (tell the
                                                                  case system)

Money is conserved: every đồng of the day's credits is in exactly one match or one
mismatch (``credits == matched + held``), or the engine raises :class:`EngineError`.
The result does not depend on the order of the input lines, and computing it twice gives
the same answer — both are property-tested (tests/reconcile/test_properties.py).

The rules themselves, one small function each, are in :mod:`reconcile.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconcile.book import Book, EngineError
from reconcile.models import DayInput, DayResult
from reconcile.rules import RULES

__all__ = ["ENGINE_VERSION", "EngineError", "reconcile_day"]

#: Stored with every run; bump when a rule changes what it decides.
ENGINE_VERSION = "3"  # 2: a link pays what is owed, the rest is held
#                      3: a carried gateway part carries its transaction's money


def reconcile_day(inp: DayInput,
                  rules: Sequence[Callable[[Book], None]] = RULES) -> DayResult:
    """Match one account-day. Pure: same input, same output.

    Args:
        inp: the day's lines, callbacks, batches, references and earlier-day summary.
        rules: the ordered rules (tests pass a subset to exercise one rule alone).

    Raises:
        EngineError: an invariant broke (money not conserved, a line left unplaced).
    """
    book = Book(inp)
    for rule in rules:
        rule(book)
    return book.result()
