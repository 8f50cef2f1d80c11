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

``settled`` moves back (to what the callbacks say) only when a re-run of reconciliation no
longer matches its money and no other day pays it (:mod:`reconcile.moves`).
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from feepay import reference as codes
from feepay.accounts import Accounts
from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.fees import Fees
from feepay.models import PaymentReference, ReferenceItem, ReferenceState
from feepay.money import local_day, now_utc, require_aware
from feepay.storage.tables import (
    AccountRow,
    FeeItemRow,
    ReferenceItemRow,
    ReferenceRow,
    UnitRow,
)
from feepay.vietqr import build_payload

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

CANCELLABLE = ("issued", "expired")
_LIVE = text("cancelled_at IS NULL")  # the predicate of uq_payment_references_live


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
        #: where new codes come from; the demo swaps in a seeded generator for repeatability
        self.generate_code: Callable[[], str] = codes.generate

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
        """Issue many references in one transaction (batch mode; all or nothing).

        One multi-row ``INSERT … ON CONFLICT DO NOTHING`` creates the new references; those
        that already existed for their (dossier, items) are read back instead.
        """
        now = require_aware(now or now_utc(), "now")
        for _attempt in range(3):
            try:
                with self.fp.db.session() as s:
                    return self._issue_batch(s, requests, now)
            except IntegrityError as exc:  # a code collision: astronomically rare; retry
                if not any(n in str(exc.orig) for n in ("payment_references.code",
                                                        "uq_payment_references_code")):
                    raise
        raise Conflict("could not draw a unique reference code")

    def _issue_batch(self, s: Session, requests: Sequence[IssueRequest],
                     now: datetime) -> list[PaymentReference]:
        planner = _Planner(s, local_day(now), now,
                           timedelta(days=self.fp.settings.reference_ttl_days),
                           self.generate_code)
        planned = [planner.one(r) for r in requests]
        unique = list({p.key: p for p in reversed(planned)}.values())
        conn = s.connection()
        created = {(d, k): i for i, d, k in conn.execute(_insert_live(conn.dialect.name),
                                                         [p.values for p in unique])}
        items = [dict(reference_id=created[p.key], position=n, fee_item_id=f.id,
                      fee_code=f.fee_code, name=f.name, kind=f.kind, amount=f.amount,
                      retention_bp=f.retention_bp)
                 for p in unique if p.key in created for n, f in enumerate(p.fees)]
        if items:
            conn.execute(ReferenceItemRow.__table__.insert(), items)
        existing = {p.key: self._to_model(s, s.scalar(select(ReferenceRow).where(
            ReferenceRow.dossier_code == p.key[0], ReferenceRow.items_key == p.key[1],
            ReferenceRow.state != "cancelled"))) for p in unique if p.key not in created}
        return [self._model(created[p.key], p.values, p.account, p.items())
                if p.key in created else existing[p.key] for p in planned]

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
        values = {c: getattr(row, c) for c in (
            "code", "dossier_code", "competent_unit", "receiving_unit", "amount_due",
            "amount_paid", "state", "issued_at", "expires_at", "memo")}
        return self._model(row.id, values, s.get(AccountRow, row.account_id), [
            ReferenceItem(fee_code=i.fee_code, name=i.name, kind=i.kind, amount=i.amount,
                          retention_bp=i.retention_bp) for i in row.items])

    def _model(self, ref_id: int, v: dict, account: AccountRow,
               items: list[ReferenceItem]) -> PaymentReference:
        number = self._numbers.get(account.id)
        if number is None:
            number = self._numbers[account.id] = self.fp.sealer.open(account.number_enc)
        return PaymentReference(
            id=ref_id, code=v["code"], dossier_code=v["dossier_code"],
            competent_unit=v["competent_unit"], receiving_unit=v["receiving_unit"],
            account_id=account.id, bank_bin=account.bank_bin,
            account_masked="•" * (len(number) - 4) + number[-4:],
            account_holder=account.holder_name, amount_due=v["amount_due"],
            amount_paid=v["amount_paid"], state=ReferenceState(v["state"]),
            issued_at=v["issued_at"], expires_at=v["expires_at"], memo=v["memo"],
            vietqr=build_payload(account.bank_bin, number, v["amount_due"], v["memo"]),
            items=tuple(items))

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


@functools.cache
def _insert_live(dialect: str):  # noqa: ANN202 - an Insert construct, built once per dialect
    """INSERT a reference unless a live one exists for its (dossier, items)."""
    t = ReferenceRow.__table__
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    return ins(t).on_conflict_do_nothing(index_elements=["dossier_code", "items_key"],
                                         index_where=_LIVE).returning(
        t.c.id, t.c.dossier_code, t.c.items_key)


@dataclass
class _Plan:
    values: dict
    fees: list[FeeItemRow]
    account: AccountRow

    @property
    def key(self) -> tuple[str, str]:
        return self.values["dossier_code"], self.values["items_key"]

    def items(self) -> list[ReferenceItem]:
        return [ReferenceItem(fee_code=f.fee_code, name=f.name, kind=f.kind, amount=f.amount,
                              retention_bp=f.retention_bp) for f in self.fees]


class _Planner:
    """Validates requests, resolving units, fees and accounts once per batch."""

    def __init__(self, s: Session, day: date, now: datetime, ttl: timedelta,
                 generate_code: Callable[[], str]) -> None:
        self.s, self.day, self.now, self.ttl = s, day, now, ttl
        self.generate_code = generate_code
        self._units: dict[str, str] = {}
        self._fees: dict[str, FeeItemRow] = {}
        self._accounts: dict[tuple[str, frozenset[str]], AccountRow] = {}

    def one(self, req: IssueRequest) -> _Plan:
        dossier = _check_dossier(req.dossier_code)
        if not req.items:
            raise ValidationError("at least one fee item is required", field="items")
        unit = self.unit(req.competent_unit, "competent_unit")
        if req.receiving_unit:
            self.unit(req.receiving_unit, "receiving_unit")
        fees = [self.fee(c) for c in req.items]
        account = self.account(unit, frozenset(f.kind for f in fees))
        code = self.generate_code()
        values = dict(code=code, dossier_code=dossier,
                      items_key=items_key(unit, (f.fee_code for f in fees)),
                      competent_unit=unit, receiving_unit=req.receiving_unit,
                      account_id=account.id, amount_due=sum(f.amount for f in fees),
                      amount_paid=0, state="issued", memo=code, issued_at=self.now,
                      expires_at=self.now + self.ttl)
        return _Plan(values, fees, account)

    def unit(self, code: str, field: str) -> str:
        """The unit now responsible for ``code`` (following merges)."""
        if code not in self._units:
            row = self.s.get(UnitRow, code)
            if row is None:
                raise ValidationError(f"unit {code} does not exist", field=field)
            seen = {code}
            while row.successor_code and row.successor_code not in seen:
                seen.add(row.successor_code)
                row = self.s.get(UnitRow, row.successor_code)
            self._units[code] = row.code
        return self._units[code]

    def fee(self, code: str) -> FeeItemRow:
        code = (code or "").strip().upper()
        if code not in self._fees:
            self._fees[code] = Fees.effective(self.s, code, self.day)
        return self._fees[code]

    def account(self, unit: str, kinds: frozenset[str]) -> AccountRow:
        if (unit, kinds) not in self._accounts:
            self._accounts[(unit, kinds)] = Accounts.choose(self.s, unit, set(kinds), self.day)
        return self._accounts[(unit, kinds)]
