"""Later account-days an earlier day's run made stale, and their marks.

A day's input is built from *earlier* days only (:mod:`reconcile.loader`), so re-running a
day reproduces its result — until an earlier day changes. A statement imported weeks
late, a corrected settlement file, or a link can change what an earlier day decides
about a reference that later days also name: a later day that matched the reference
fully may now hold a duplicate, or a later duplicate may now be the payment. Nothing in
the later day's own input changed, so :meth:`Reconciler.is_done
<reconcile.runner.Reconciler.is_done>` cannot see it.

So a run that decides something new — its first run while later days already ran, or a
re-run whose digest differs from the previous one — marks every later account-day whose
matches or mismatches name a reference it touched (``recon_stale_days``), **in its own
transaction**: the marks exist exactly when the change does. The nightly job runs marked
days (oldest first, whatever their age); a run removes the marks it saw when it started,
and a mark made while it ran stays for the next night.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import delete, select
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


def old_references(s: Session, account_id: int, day: date) -> set[int] | None:
    """Before a run replaces the day's matches: the references they pay, or ``None`` when
    no later day has run at all — then nothing can be stale, and the night's first runs
    (the common case) pay one indexed query for it."""
    R, M = ReconRunRow, ReconMatchRow
    if s.scalar(select(R.id).where(R.day > day).limit(1)) is None:
        return None
    return set(s.scalars(select(M.reference_id).where(
        M.account_id == account_id, M.day == day, M.reference_id.is_not(None)).distinct()))


def mark_later(s: Session, run: ReconRunRow, result: DayResult, ref_ids: dict[str, int],
               old_refs: set[int] | None, now: datetime) -> int:
    """Mark the later account-days that name a reference ``run`` touched, if it decided
    something new (see the module docstring); returns how many account-days."""
    if old_refs is None or not _changed(s, run):
        return 0
    codes = {a.code for m in result.matches for a in m.allocations}
    codes |= {x.reference for x in result.mismatches if x.reference}
    ids = {ref_ids[c] for c in codes if c in ref_ids} | old_refs
    if not ids:
        return 0
    M, X = ReconMatchRow, ReconMismatchRow
    later = set(s.execute(select(M.account_id, M.day).where(
        member(s, M.reference_id, ids), M.day > run.day).distinct()).tuples())
    names = {c for c, i in ref_ids.items() if i in ids}
    names |= _codes(s, old_refs - set(ref_ids.values()))  # paid before, not loaded now
    later |= set(s.execute(select(X.account_id, X.day).where(
        member(s, X.reference_code, names), X.day > run.day,
        X.status != "superseded").distinct()).tuples())
    s.add_all(ReconStaleDayRow(account_id=a, day=d, by_run_id=run.id, marked_at=now)
              for a, d in sorted(later))
    return len(later)


def _changed(s: Session, run: ReconRunRow) -> bool:
    """Whether ``run`` decided something its account-day's previous run did not (a first
    run always does)."""
    R = ReconRunRow
    previous = s.execute(select(R.result_digest).where(
        R.account_id == run.account_id, R.day == run.day, R.id != run.id,
        R.status == "balanced").order_by(R.attempt.desc()).limit(1)).first()
    return previous is None or previous.result_digest != run.result_digest


def _codes(s: Session, ids: set[int]) -> set[str]:
    from feepay.storage.tables import ReferenceRow

    if not ids:
        return set()
    return set(s.scalars(select(ReferenceRow.code).where(member(s, ReferenceRow.id, ids))))
