"""Payment references: one per dossier and set of fee items, paid into the unit's account.

``issue`` picks the collection account by the *competent* unit (after following merges)
and the fee kinds — never by where the dossier was filed, since filing is boundary-free
within a province — draws a new random code, and stores it. The pair (dossier, items) has
at most one live reference, enforced by a partial unique index; issuing again (even
concurrently, from many workers) returns that same reference.

States (``docs/concepts.md``)::

    issued ─▶ partially_paid ─▶ paid ─▶ settled        (overpaid beside paid)
       │            (callbacks)           (reconciliation saw the money)
       ├─▶ cancelled   (by the case system; frees the dossier for a new reference)
       └─▶ expired     (past expires_at with no money)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from feepay import reference as codes
from feepay.accounts import Accounts
from feepay.banks import get_bank
from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.fees import Fees
from feepay.models import PaymentReference, ReferenceItem, ReferenceState
from feepay.money import local_day, now_utc, require_aware
from feepay.storage.tables import AccountRow, ReferenceItemRow, ReferenceRow, UnitRow
from feepay.vietqr import build_payload

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

CANCELLABLE = ("issued", "expired")
_LIVE = text("state <> 'cancelled'")


@dataclass(frozen=True)
class IssueRequest:
    """One reference to issue (used by :meth:`References.issue_many`)."""

    dossier_code: str
    competent_unit: str
    items: Sequence[str]
    receiving_unit: str | None = None


def items_key(competent_unit: str, fee_codes: Iterable[str]) -> str:
    """A stable key for (competent unit, multiset of fee codes): order does not matter."""
    counted = sorted(Counter(c.upper() for c in fee_codes).items())
    body = competent_unit + "|" + ";".join(f"{c}x{n}" for c, n in counted)
    return hashlib.sha256(body.encode()).hexdigest()


def _check_dossier(dossier_code: str) -> str:
    d = (dossier_code or "").strip()
    if not d or len(d) > 80 or not d.isprintable():
        raise ValidationError("a dossier code is 1–80 printable characters",
                              field="dossier_code")
    return d


class References:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp
        self._numbers: dict[int, str] = {}

    # -- issuing ---------------------------------------------------------------------------
    def issue(self, dossier_code: str, competent_unit: str, items: Sequence[str],
              receiving_unit: str | None = None, *, now: datetime | None = None,
              actor: str = "system") -> PaymentReference:
        """Issue (or return the existing) reference for a dossier's fee items.

        Args:
            dossier_code: the case system's dossier id (opaque).
            competent_unit: code of the unit whose fees these are.
            items: fee codes; repeat a code to charge it twice.
            receiving_unit: where the dossier was filed (recorded, not used for routing).

        Raises:
            ValidationError: unknown unit or fee, empty items, bad dossier code.
            NoCollectionAccount: the unit has no active account for these fee kinds.
        """
        req = IssueRequest(dossier_code, competent_unit, tuple(items), receiving_unit)
        return self.issue_many([req], now=now, actor=actor)[0]

    def issue_many(self, requests: Sequence[IssueRequest], *, now: datetime | None = None,
                   actor: str = "system") -> list[PaymentReference]:
        """Issue many references in one transaction (batch mode; all or nothing)."""
        now = require_aware(now or now_utc(), "now")
        ttl = timedelta(days=self.fp.settings.reference_ttl_days)
        for _attempt in range(3):
            try:
                with self.fp.db.session() as s:
                    ids = [self._issue_one(s, r, now, ttl) for r in requests]
                    rows = {r.id: r for r in s.scalars(
                        select(ReferenceRow).where(ReferenceRow.id.in_(ids)))}
                    return [self._to_model(s, rows[i]) for i in ids]
            except IntegrityError as exc:  # a code collision: astronomically rare; retry
                if "code" not in str(exc.orig):
                    raise
        raise Conflict("could not draw a unique reference code")

    def _issue_one(self, s: Session, req: IssueRequest, now: datetime, ttl: timedelta) -> int:
        dossier = _check_dossier(req.dossier_code)
        if not req.items:
            raise ValidationError("at least one fee item is required", field="items")
        unit = self._resolve_unit(s, req.competent_unit)
        if req.receiving_unit and s.get(UnitRow, req.receiving_unit) is None:
            raise ValidationError(f"unit {req.receiving_unit} does not exist",
                                  field="receiving_unit")
        day = local_day(now)
        fees = [Fees.effective(s, c.strip().upper(), day) for c in req.items]
        account = Accounts.choose(s, unit, {f.kind for f in fees}, day)
        key = items_key(unit, (f.fee_code for f in fees))
        code = codes.generate()
        values = dict(code=code, dossier_code=dossier, items_key=key, competent_unit=unit,
                      receiving_unit=req.receiving_unit, account_id=account.id,
                      amount_due=sum(f.amount for f in fees), amount_paid=0, state="issued",
                      memo=code, issued_at=now, expires_at=now + ttl)
        ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)
        stmt = ins(ReferenceRow).values(**values).on_conflict_do_nothing(
            index_elements=["dossier_code", "items_key"], index_where=_LIVE)
        new_id = s.execute(stmt.returning(ReferenceRow.id)).scalar()
        if new_id is None:  # an existing live reference for this dossier and items
            return s.scalar(select(ReferenceRow.id).where(
                ReferenceRow.dossier_code == dossier, ReferenceRow.items_key == key,
                ReferenceRow.state != "cancelled"))
        s.add_all(ReferenceItemRow(reference_id=new_id, position=i, fee_item_id=f.id,
                                   fee_code=f.fee_code, name=f.name, kind=f.kind,
                                   amount=f.amount, retention_bp=f.retention_bp)
                  for i, f in enumerate(fees))
        return new_id

    @staticmethod
    def _resolve_unit(s: Session, code: str) -> str:
        row = s.get(UnitRow, code)
        if row is None:
            raise ValidationError(f"unit {code} does not exist", field="competent_unit")
        seen = {code}
        while row.successor_code and row.successor_code not in seen:
            seen.add(row.successor_code)
            row = s.get(UnitRow, row.successor_code)
        return row.code

    # -- reading ---------------------------------------------------------------------------
    def get(self, code: str) -> PaymentReference:
        """The reference with this code (spaces, dashes and case are ignored)."""
        canonical = codes.compact(code)
        with self.fp.db.session() as s:
            row = s.scalar(select(ReferenceRow).where(ReferenceRow.code == canonical))
            if row is None:
                codes.validate(canonical)  # a typo gets the precise reason
                raise NotFound(f"no payment reference {codes.format(canonical)}",
                               field="reference")
            return self._to_model(s, row)

    def for_dossier(self, dossier_code: str) -> list[PaymentReference]:
        with self.fp.db.session() as s:
            rows = s.scalars(select(ReferenceRow).where(
                ReferenceRow.dossier_code == dossier_code).order_by(ReferenceRow.id))
            return [self._to_model(s, r) for r in rows]

    def _to_model(self, s: Session, row: ReferenceRow) -> PaymentReference:
        account = s.get(AccountRow, row.account_id)
        number = self._numbers.get(account.id)
        if number is None:
            number = self._numbers[account.id] = self.fp.sealer.open(account.number_enc)
        get_bank(account.bank_bin)
        return PaymentReference(
            id=row.id, code=row.code, dossier_code=row.dossier_code,
            competent_unit=row.competent_unit, receiving_unit=row.receiving_unit,
            account_id=account.id, bank_bin=account.bank_bin,
            account_masked="•" * (len(number) - 4) + number[-4:],
            account_holder=account.holder_name, amount_due=row.amount_due,
            amount_paid=row.amount_paid, state=ReferenceState(row.state),
            issued_at=row.issued_at, expires_at=row.expires_at, memo=row.memo,
            vietqr=build_payload(account.bank_bin, number, row.amount_due, row.memo),
            items=tuple(ReferenceItem(fee_code=i.fee_code, name=i.name, kind=i.kind,
                                      amount=i.amount, retention_bp=i.retention_bp)
                        for i in row.items))

    # -- state changes ---------------------------------------------------------------------
    def cancel(self, code: str, reason: str, actor: str = "system") -> PaymentReference:
        """Withdraw an unpaid reference. Paid ones cannot be cancelled (refund instead)."""
        if not (reason or "").strip():
            raise ValidationError("a reason is required", field="reason")
        canonical = codes.compact(code)
        with self.fp.db.session() as s:
            res = s.execute(update(ReferenceRow).where(
                ReferenceRow.code == canonical, ReferenceRow.state.in_(CANCELLABLE))
                .values(state="cancelled", cancelled_at=now_utc(), cancel_reason=reason))
            row = s.scalar(select(ReferenceRow).where(ReferenceRow.code == canonical))
            if row is None:
                raise NotFound(f"no payment reference {codes.format(canonical)}",
                               field="reference")
            if res.rowcount != 1:
                raise Conflict(f"reference {codes.format(canonical)} is {row.state}; only "
                               "unpaid references can be cancelled", field="state")
            self.fp.audit.append(s, actor=actor, action="references.cancel",
                                 object_type="reference", object_id=canonical, reason=reason)
            return self._to_model(s, row)

    def expire_due(self, now: datetime | None = None) -> int:
        """Mark unpaid references past their expiry as expired. Returns how many."""
        now = require_aware(now or now_utc(), "now")
        with self.fp.db.session() as s:
            return s.execute(update(ReferenceRow).where(
                ReferenceRow.state == "issued", ReferenceRow.expires_at < now)
                .values(state="expired")).rowcount
