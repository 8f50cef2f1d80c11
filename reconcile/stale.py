"""Later account-days an earlier day's run made stale, and their marks.

A day's input is built from *earlier* days only (:mod:`reconcile.loader`), so re-running a
day reproduces its result — until an earlier day changes. A statement imported weeks
late, a corrected settlement file, or a link can change what an earlier day decides
about a reference that later days also name: a later day that matched the reference
fully may now hold a duplicate, or a later duplicate may now be the payment. Nothing in
the later day's own input changed, so :meth:`Reconciler.is_done
<reconcile.runner.Reconciler.is_done>` cannot see it.

So a run compares, per reference, what it decides with what the account-day's stored
result said — the money matched to it, the mismatches about it (a first run of a day that
later days ran after has nothing stored: all of it is new) — and marks every later
account-day whose matches or mismatches name a reference whose outcome changed
(``recon_stale_days``), **in its own transaction**: the marks exist exactly when the
change does. An unchanged re-run marks nothing, so cascades stop. The nightly job runs
marked days (oldest first, whatever their age); a balanced run removes the marks it saw
when it started (an unbalanced one keeps them: it is retried), and a mark made while it
ran stays for the next night.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from feepay.storage.tables_reconcile import (
    ReconMatchRow,
    ReconMismatchRow,
    ReconRunRow,
    ReconStaleDayRow,
)
from reconcile.loader import member
from reconcile.models import DayResult


def marks(s: Session, account_id: int, day: date) -> list[int]:
    """The ids of the marks on the account-day (what a run starting now will settle)."""
    S = ReconStaleDayRow
    return list(s.scalars(select(S.id).where(S.account_id == account_id, S.day == day)))


def unmark(s: Session, ids: list[int]) -> None:
    """Remove the marks a run saw when it started (in the run's transaction)."""
    if ids:
        S = ReconStaleDayRow
        s.execute(delete(S).where(S.id.in_(ids)).execution_options(synchronize_session=False))


def stale_days(s: Session) -> list[tuple[int, date]]:
    """Every marked account-day, oldest day first."""
    S = ReconStaleDayRow
    return [(a, d) for a, d in s.execute(select(S.account_id, S.day).distinct()
                                          .order_by(S.day, S.account_id))]


@dataclass(frozen=True)
class Before:
    """What the account-day's stored result said, per reference, before a run replaces
    it: the money its matches give each reference, and the mismatches (key, amount,
    reference code) its last run raised or the day holds."""

    matched: dict[int, int]
    held: frozenset[tuple[str, int, str | None]]


def before(s: Session, account_id: int, day: date) -> Before | None:
    """Read :class:`Before` ahead of the run's writes, or ``None`` when no later day has
    run at all — then nothing can be stale, and the night's first runs (the common case)
    pay one indexed query for it.

    The mismatches are those the day's last run raised and those the day holds (its
    ``day``): a later day may have raised one of the day's rows again, which then names
    that day's run, yet this day's re-run is the one that lets it go
    (:mod:`reconcile.persist`)."""
    R, M, X = ReconRunRow, ReconMatchRow, ReconMismatchRow
    if s.scalar(select(R.id).where(R.day > day).limit(1)) is None:
        return None
    matched = dict(s.execute(select(M.reference_id, func.sum(M.amount)).where(
        M.account_id == account_id, M.day == day, M.reference_id.is_not(None))
        .group_by(M.reference_id)).all())
    last = s.scalar(select(func.max(R.id)).where(
        R.account_id == account_id, R.day == day, R.status != "failed"))
    columns = (X.key, X.amount, X.reference_code)
    held = set(s.execute(select(*columns).where(
        X.account_id == account_id, X.day == day, X.status != "superseded")).tuples())
    if last:
        held.update(s.execute(select(*columns).where(
            X.run_id == last, X.status != "superseded")).tuples())
    return Before({k: int(v) for k, v in matched.items()}, frozenset(held))


def mark_later(s: Session, run: ReconRunRow, result: DayResult, ref_ids: dict[str, int],
               was: Before | None, now: datetime) -> int:
    """Mark the later account-days that name a reference whose outcome ``run`` changed
    (the money matched to it, or a mismatch about it); returns how many account-days."""
    if was is None:
        return 0
    ids, codes = _changed(result, ref_ids, was)
    codes |= {c for c, i in ref_ids.items() if i in ids}  # later mismatches name codes
    codes |= _codes(s, ids - set(ref_ids.values()))      # matched before, not loaded now
    ids |= {ref_ids[c] for c in codes if c in ref_ids}
    if not ids and not codes:
        return 0
    M, X = ReconMatchRow, ReconMismatchRow
    later = set(s.execute(select(M.account_id, M.day).where(
        member(s, M.reference_id, ids), M.day > run.day).distinct()).tuples()) if ids else set()
    if codes:
        later |= set(s.execute(select(X.account_id, X.day).where(
            member(s, X.reference_code, codes), X.day > run.day,
            X.status != "superseded").distinct()).tuples())
    s.add_all(ReconStaleDayRow(account_id=a, day=d, by_run_id=run.id, marked_at=now)
              for a, d in sorted(later))
    return len(later)


def _changed(result: DayResult, ref_ids: dict[str, int],
             was: Before) -> tuple[set[int], set[str]]:
    """(reference ids whose matched money changed, codes a mismatch raised or no longer
    raised names): what later days may have decided differently about."""
    now: dict[int, int] = defaultdict(int)
    for m in result.matches:
        for a in m.allocations:
            if a.code in ref_ids:
                now[ref_ids[a.code]] += a.amount
    ids = {r for r in now.keys() | was.matched.keys() if now.get(r, 0) != was.matched.get(r, 0)}
    held = {(x.key, x.amount, x.reference) for x in result.mismatches}
    codes = {ref for _k, _a, ref in held.symmetric_difference(was.held) if ref}
    return ids, codes


def _codes(s: Session, ids: set[int]) -> set[str]:
    from feepay.storage.tables import ReferenceRow

    if not ids:
        return set()
    return set(s.scalars(select(ReferenceRow.code).where(member(s, ReferenceRow.id, ids))))
