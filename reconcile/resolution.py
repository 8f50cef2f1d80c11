"""Resolving mismatches: a person's decision, with a reason, recorded for good.

Actions (docs/reconcile.md says which fits which category):

==============  =========================================================================
``link``        this statement line pays that reference (of the same collection
                account). The account-day is re-run at once: the engine applies the link
                first (rule *manual*): the reference takes what it still owes, any rest
                is held again (``overpaid``, or ``duplicate`` if it owed nothing) for a
                refund; the sum check is redone. Not for a line partly matched already
                (``overpaid``), nor a line linked once before. For an ambiguous gateway
                credit, ``batch=``: the line is that settlement batch's credit (rule
                *gateway* then splits it into the batch's transactions).
``refund_due``  the money must go back to the payer (duplicate, overpaid, unknown…).
``write_off``   nothing more will happen (a bank's own credit, a callback proven false…).
``carry_over``  wait: look again later (part-payment expected, money still in transit).
``acknowledge`` for ``money_no_callback``: the case system has been told.
==============  =========================================================================

Every action needs a reason and an actor, is applied with a guarded update (only an
``open`` or ``carried_over`` mismatch can be resolved — two people cannot both resolve
the same one), is appended to ``recon_resolutions`` and is an entry in the hash-chained
audit log, in the same transaction. Re-running a day never touches a resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from feepay import reference as codes
from feepay.audit import checked_actor, checked_reason
from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.money import now_utc
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_reconcile import (
    ACTIONS,
    ReconMatchRow,
    ReconMismatchRow,
    ReconResolutionRow,
)
from feepay.storage.tables_statements import SettlementBatchRow
from reconcile.models import CATEGORY_LABELS, Category, Policy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay
    from reconcile.runner import RunOutcome

RESOLVABLE = ("open", "carried_over")
NO_MONEY = (Category.PAID_NO_MONEY.value, Category.MONEY_NO_CALLBACK.value)
NOT_LINKABLE = (*NO_MONEY, Category.BATCH_TOTAL_DIFFERS.value)
#: Categories holding only part of a line whose other part is matched (rule ``over``, and a
#: link's own excess): a link gives the reference the whole line, taking that match away.
PART_MATCHED = (Category.OVERPAID.value,)


@dataclass(frozen=True)
class MismatchView:
    """A mismatch as people and the CLI see it."""

    id: int
    account_id: int
    day: date
    key: str
    category: str
    label: str
    amount: int
    expected_amount: int | None
    reference: str | None
    suggested: tuple[str, ...]
    line_id: int | None
    line_day: date | None
    event_id: int | None
    batch_id: str | None
    status: str
    resolution: str | None
    resolution_reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    linked_reference: str | None
    evidence: dict
    linked_batch: str | None = None

    def as_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["suggested"] = list(self.suggested)
        return out


def to_view(row: ReconMismatchRow) -> MismatchView:
    return MismatchView(
        row.id, row.account_id, row.day, row.key, row.category,
        CATEGORY_LABELS[Category(row.category)][0], row.amount, row.expected_amount,
        row.reference_code, tuple(row.suggested.split()), row.line_id, row.line_day,
        row.event_id, row.batch_id, row.status, row.resolution, row.resolution_reason,
        row.resolved_by, row.resolved_at, row.linked_reference, json.loads(row.evidence),
        row.linked_batch)


@dataclass(frozen=True)
class Resolved:
    """The outcome of an action: the mismatch after it, and the re-run a link caused."""

    mismatch: MismatchView
    rerun: RunOutcome | None = None

    def as_dict(self) -> dict[str, object]:
        return {"mismatch": self.mismatch.as_dict(),
                "rerun": self.rerun.as_dict() if self.rerun else None}


class Resolutions:
    """List, show and resolve mismatches of one feepay database."""

    def __init__(self, fp: FeePay, policy: Policy | None = None) -> None:
        self.fp = fp
        self.policy = policy or Policy()  # the reconciler's: its batch lag, its re-runs

    # -- reading ----------------------------------------------------------------------
    def get(self, mismatch_id: int) -> MismatchView:
        with self.fp.db.session() as s:
            return to_view(self._row(s, mismatch_id))

    def list(self, *, status: str | None = "open", category: str | None = None,
             account_id: int | None = None, day: date | None = None,
             limit: int = 200) -> list[MismatchView]:
        X = ReconMismatchRow
        q = select(X).order_by(X.day, X.account_id, X.key).limit(limit)
        if status:
            q = q.where(X.status == status)
        if category:
            q = q.where(X.category == Category(category).value)
        if account_id is not None:
            q = q.where(X.account_id == account_id)
        if day is not None:
            q = q.where(X.day == day)
        with self.fp.db.session() as s:
            return [to_view(r) for r in s.scalars(q)]

    def history(self, mismatch_id: int) -> list[dict[str, object]]:
        R = ReconResolutionRow
        with self.fp.db.session() as s:
            return [{"action": r.action, "reason": r.reason, "actor": r.actor, "at": r.at,
                     "reference": r.reference_code, "audit_hash": r.audit_hash}
                    for r in s.scalars(select(R).where(R.mismatch_id == mismatch_id)
                                       .order_by(R.id))]

    # -- acting -----------------------------------------------------------------------
    def resolve(self, mismatch_id: int, action: str, *, reason: str, actor: str,
                reference: str | None = None, batch: str | None = None) -> Resolved:
        """Apply ``action`` (see the module docstring) to an open mismatch.

        Raises:
            ValidationError: unknown action, no reason or actor, a link without a
                reference (or batch), an action that does not fit the category, a link
                to another collection account's reference or of a line partly matched or
                linked, a batch link of a line that is not an ambiguous gateway credit.
            NotFound: no such mismatch or reference.
            Conflict: the mismatch is no longer open (someone resolved it, or a later
                day cleared it), or the reference cannot take money.
        """
        action, reason, actor = _check(action, reason, actor)
        with self.fp.db.session() as s:
            row = self._row(s, mismatch_id)
            code, batch = self._check_fits(s, row, action, reference, batch)
            self._apply(s, row, action, reason, actor, code, batch)
            account_id, line_day = row.account_id, row.line_day
        rerun = None
        if action == "link":
            from reconcile.runner import Reconciler

            rerun = Reconciler(self.fp, self.policy).run_account_day(account_id, line_day,
                                                        trigger="resolution", actor=actor)
        return Resolved(self.get(mismatch_id), rerun)

    def link(self, mismatch_id: int, reference: str, *, reason: str, actor: str) -> Resolved:
        return self.resolve(mismatch_id, "link", reason=reason, actor=actor,
                            reference=reference)

    def link_batch(self, mismatch_id: int, batch: str, *, reason: str,
                   actor: str) -> Resolved:
        """Resolve an ambiguous gateway credit: its line is the credit of ``batch``."""
        return self.resolve(mismatch_id, "link", reason=reason, actor=actor, batch=batch)

    def refund_due(self, mismatch_id: int, *, reason: str, actor: str) -> Resolved:
        return self.resolve(mismatch_id, "refund_due", reason=reason, actor=actor)

    def write_off(self, mismatch_id: int, *, reason: str, actor: str) -> Resolved:
        return self.resolve(mismatch_id, "write_off", reason=reason, actor=actor)

    def carry_over(self, mismatch_id: int, *, reason: str, actor: str) -> Resolved:
        return self.resolve(mismatch_id, "carry_over", reason=reason, actor=actor)

    def acknowledge(self, mismatch_id: int, *, reason: str, actor: str) -> Resolved:
        return self.resolve(mismatch_id, "acknowledge", reason=reason, actor=actor)

    # -- internals --------------------------------------------------------------------
    @staticmethod
    def _row(s: Session, mismatch_id: int) -> ReconMismatchRow:
        row = s.get(ReconMismatchRow, mismatch_id)
        if row is None:
            raise NotFound(f"no mismatch {mismatch_id}", field="mismatch")
        return row

    def _check_fits(self, s: Session, row: ReconMismatchRow, action: str,
                    reference: str | None,
                    batch: str | None) -> tuple[str | None, str | None]:
        """(the reference code, the batch id) the action links to, or why it cannot be
        applied to ``row``."""
        if batch is not None and (action != "link" or reference):
            raise ValidationError("a batch is given with --action link and no reference",
                                  field="batch")
        if row.status not in RESOLVABLE:
            raise Conflict(f"mismatch {row.id} is {row.status}; only open or carried-over "
                           "mismatches can be resolved", field="status")
        if batch is not None:
            return None, _check_batch_link(s, row, batch, self.policy.batch_lag_days)
        if action == "acknowledge" and row.category != Category.MONEY_NO_CALLBACK.value:
            raise ValidationError("acknowledge is for money_no_callback notices",
                                  field="action")
        if action == "refund_due" and row.category in NO_MONEY:
            raise ValidationError(f"a {row.category} mismatch holds no money to refund",
                                  field="action")
        if action != "link":
            if reference:
                raise ValidationError("only link takes a reference", field="reference")
            return None, None
        return _check_link(s, row, reference), None

    def _apply(self, s: Session, row: ReconMismatchRow, action: str, reason: str,
               actor: str, code: str | None, batch: str | None = None) -> None:
        now = now_utc()
        X = ReconMismatchRow
        values = {"status": "carried_over" if action == "carry_over" else "resolved",
                  "resolution": action, "resolution_reason": reason, "resolved_by": actor,
                  "resolved_at": now, "updated_at": now}
        if code:
            values["linked_reference"] = code
        if batch:
            values["linked_batch"] = batch
        res = s.execute(update(X).where(X.id == row.id, X.status.in_(RESOLVABLE))
                        .values(**values).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            raise Conflict(f"mismatch {row.id} was resolved meanwhile", field="status")
        entry = self.fp.audit.append(
            s, actor=actor, action=f"mismatch.{action}", object_type="mismatch",
            object_id=row.id, reason=reason,
            details={"key": row.key, "category": row.category, "account": row.account_id,
                     "day": row.day.isoformat(), "amount": row.amount,
                     "reference": code or row.reference_code,
                     **({"batch": batch} if batch else {})})
        s.add(ReconResolutionRow(mismatch_id=row.id, action=action, reason=reason,
                                 actor=actor, at=now, reference_code=code,
                                 audit_hash=entry.hash))


def _check_link(s: Session, row: ReconMismatchRow, reference: str | None) -> str:
    """The canonical code ``row``'s line may be linked to, or why it may not.

    The engine gives a linked line to its reference (what it owes; the rest is held), so a
    link is refused where that would take money from a match, count it on the wrong
    account, or link a line twice.
    """
    if row.category in NOT_LINKABLE or row.line_id is None:
        raise ValidationError(f"a {row.category} mismatch holds no statement line to "
                              "link", field="action")
    if row.batch_id:
        raise ValidationError("this money is part of a gateway settlement batch: link an "
                              "ambiguous credit to its batch (--batch), or import the "
                              "gateway's corrected file (--replace-batches)", field="action")
    if row.category in PART_MATCHED:
        raise ValidationError(f"the rest of this line is already matched to "
                              f"{_shown(row.reference_code)}; a link would take that match "
                              "away. Mark the excess refund_due instead", field="action")
    if not reference:
        raise ValidationError("link needs the reference the money pays",
                              field="reference")
    code = codes.validate(reference)
    ref = s.execute(select(ReferenceRow.state, ReferenceRow.account_id)
                    .where(ReferenceRow.code == code)).first()
    if ref is None:
        raise NotFound(f"no payment reference {codes.format(code)}", field="reference")
    if ref.state == "cancelled":
        raise Conflict(f"reference {codes.format(code)} is cancelled: refund the money "
                       "or issue a new reference", field="reference")
    if ref.account_id != row.account_id:
        raise ValidationError(
            f"reference {codes.format(code)} belongs to collection account {ref.account_id}, "
            f"not to account {row.account_id} that received this money: the money must be "
            "transferred to the right unit's account, where it will match; resolve this "
            "mismatch as refund_due (transferred out) with the transfer's reference in the "
            "reason", field="reference")
    _check_not_paid_later(s, row, code)
    _check_not_linked(s, row)
    return code


def _check_not_paid_later(s: Session, row: ReconMismatchRow, code: str) -> None:
    """The engine counts only earlier days' matches as already paid: a reference a later
    day matched would be paid twice by a link on this day."""
    M, R = ReconMatchRow, ReferenceRow
    later = sorted(set(s.scalars(select(M.day).join(R, R.id == M.reference_id).where(
        R.code == code, M.day > row.line_day, M.amount > 0))))
    if later:
        shown = ", ".join(f"{d:%d/%m/%Y}" for d in later)
        raise ValidationError(
            f"reference {codes.format(code)} was paid by money matched on {shown}, after "
            "this line: a link here would pay it twice. Mark this one refund_due, or "
            "resolve the later payment first", field="reference")


def _check_batch_link(s: Session, row: ReconMismatchRow, batch: str, lag_days: int) -> str:
    """The batch id an ambiguous gateway credit may be linked to, or why it may not: the
    batch must be one of the account's, settled on the line's day or within the lag
    before it (the days the engine looks for its credit)."""
    if row.category != Category.AMBIGUOUS.value or not row.batch_id or row.line_id is None:
        raise ValidationError("only an ambiguous gateway credit (a line several batches, or "
                              "a batch several lines, fit) is linked to a batch",
                              field="action")
    batch = (batch or "").strip()
    B, lag = SettlementBatchRow, timedelta(days=lag_days)
    settled_on = s.scalar(select(B.settled_on).where(B.account_id == row.account_id,
                                                     B.batch_id == batch))
    if settled_on is None:
        raise NotFound(f"account {row.account_id} has no settlement batch {batch!r}",
                       field="batch")
    if not settled_on <= row.line_day <= settled_on + lag:
        raise ValidationError(
            f"batch {batch} settled on {settled_on:%d/%m/%Y}: its credit is looked for "
            f"then and up to {lag.days} days after, not on {row.line_day:%d/%m/%Y}",
            field="batch")
    candidates = json.loads(row.evidence).get("batches")
    if candidates and batch not in candidates:
        raise ValidationError(f"batch {batch} is not one this line fits (it fits "
                              f"{', '.join(candidates)})", field="batch")
    _check_batch_unplaced(s, row, batch)
    _check_not_linked(s, row)
    return batch


def _check_batch_unplaced(s: Session, row: ReconMismatchRow, batch: str) -> None:
    """A batch another day already matched or holds is that day's: linking it here too
    would place its money twice."""
    M, X = ReconMatchRow, ReconMismatchRow
    days = set(s.scalars(select(M.day).where(M.account_id == row.account_id,
                                              M.batch_id == batch, M.day != row.day)))
    days |= set(s.scalars(select(X.day).where(X.account_id == row.account_id,
                                               X.batch_id == batch, X.day != row.day,
                                               X.status != "superseded")))
    if days:
        shown = ", ".join(f"{d:%d/%m/%Y}" for d in sorted(days))
        raise ValidationError(f"batch {batch} is already placed on {shown}: resolve it "
                              "there (or re-run that day) before linking it here",
                              field="batch")


def _check_not_linked(s: Session, row: ReconMismatchRow) -> None:
    """A line is linked once: a second link would compete with the first in the engine."""
    X = ReconMismatchRow
    first = s.execute(select(X.id, X.linked_reference, X.linked_batch).where(
        X.account_id == row.account_id, X.line_day == row.line_day,
        X.line_id == row.line_id, X.resolution == "link", X.id != row.id)).first()
    if first is not None:
        to = (f"batch {first.linked_batch}" if first.linked_batch
              else _shown(first.linked_reference))
        raise ValidationError(
            f"this statement line is already linked to {to} (mismatch {first.id}); what "
            "that link could not place is held here: mark it refund_due (or write_off)",
            field="action")


def _shown(code: str | None) -> str:
    return f"reference {codes.format(code)}" if code else "a reference"


def _check(action: str, reason: str, actor: str) -> tuple[str, str, str]:
    action = (action or "").strip().lower().replace("-", "_")
    if action not in ACTIONS:
        raise ValidationError(f"action is one of {', '.join(ACTIONS)}", field="action")
    return action, checked_reason(reason), checked_actor(actor)
