"""Fee items (khoản phí, lệ phí) per administrative procedure (mã TTHC).

A fee item has a code, a name, a kind (``phi`` or ``le_phi``), an amount in VND, a
retention rate for phí (the share the unit keeps; lệ phí always goes 100 % to the state
budget, so its retention is 0) and an effective period. Amounts change over time by new
rows with a new ``effective_from``; periods of one fee code never overlap.

Retention is stored in basis points (``9000`` = 90 %) so no float touches money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.models import FeeKind
from feepay.money import now_utc, parse_vnd
from feepay.storage.tables import FeeItemRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

PROCEDURE = re.compile(r"^\d\.\d{6}$")
FEE_CODE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,39}$")


@dataclass(frozen=True)
class FeeItem:
    id: int
    procedure_code: str
    fee_code: str
    name: str
    kind: str
    amount: int
    retention_bp: int
    effective_from: date
    effective_to: date | None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def parse_retention(value: str | int | None, kind: str) -> int:
    """``"90%"``, ``"90"``, ``"87.5%"`` or basis points (int) → basis points 0–10000."""
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        bp = value
    else:
        m = re.fullmatch(r"\s*(\d{1,3})(?:[.,](\d{1,2}))?\s*%?\s*", str(value))
        if not m:
            raise ValidationError(f"'{value}' is not a percentage", field="retention")
        bp = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if not 0 <= bp <= 10000:
        raise ValidationError("retention is between 0 % and 100 %", field="retention")
    if kind == FeeKind.LE_PHI and bp != 0:
        raise ValidationError("lệ phí goes 100 % to the state budget: retention must be 0",
                              field="retention")
    return bp


def _to_item(r: FeeItemRow) -> FeeItem:
    return FeeItem(r.id, r.procedure_code, r.fee_code, r.name, r.kind, r.amount,
                   r.retention_bp, r.effective_from, r.effective_to)


class Fees:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def add(self, procedure_code: str, fee_code: str, name: str, kind: str,
            amount: int | str, retention: str | int | None = None,
            effective_from: date | None = None, effective_to: date | None = None,
            actor: str = "system") -> FeeItem:
        """Add a fee item; refuses a period overlapping the same fee code's other rows."""
        if not PROCEDURE.match(procedure_code or ""):
            raise ValidationError("a procedure code (mã TTHC) looks like 1.001612",
                                  field="procedure_code")
        fee_code = (fee_code or "").strip().upper()
        if not FEE_CODE.match(fee_code):
            raise ValidationError("1–40 characters: A–Z, 0–9, '.', '_' or '-'",
                                  field="fee_code")
        try:
            kind = FeeKind(kind).value
        except ValueError:
            raise ValidationError("kind is phi or le_phi", field="kind") from None
        amount = parse_vnd(amount, field="amount")
        if amount <= 0:
            raise ValidationError("the amount must be positive", field="amount")
        if not (name or "").strip():
            raise ValidationError("a name is required", field="name")
        bp = parse_retention(retention, kind)
        start = effective_from or now_utc().date()
        if effective_to is not None and effective_to < start:
            raise ValidationError("effective_to is before effective_from", field="effective_to")
        with self.fp.db.session() as s:
            clash = s.scalar(select(FeeItemRow).where(
                FeeItemRow.fee_code == fee_code,
                or_(FeeItemRow.effective_to.is_(None), FeeItemRow.effective_to >= start),
                FeeItemRow.effective_from <= (effective_to or date.max)))
            if clash is not None:
                raise Conflict(f"fee {fee_code} already has an amount from "
                               f"{clash.effective_from:%d/%m/%Y}; end it first "
                               f"(effective_to {start - timedelta(days=1):%d/%m/%Y})",
                               field="effective_from")
            row = FeeItemRow(procedure_code=procedure_code, fee_code=fee_code,
                             name=name.strip(), kind=kind, amount=amount, retention_bp=bp,
                             effective_from=start, effective_to=effective_to,
                             created_at=now_utc())
            s.add(row)
            s.flush()
            self.fp.audit.append(s, actor=actor, action="fees.add", object_type="fee",
                                 object_id=fee_code, details=_to_item(row).as_dict())
            return _to_item(row)

    def end(self, fee_code: str, last_day: date, actor: str = "system") -> FeeItem:
        """Close the open-ended period of a fee code on ``last_day``."""
        with self.fp.db.session() as s:
            row = s.scalar(select(FeeItemRow).where(FeeItemRow.fee_code == fee_code,
                                                    FeeItemRow.effective_to.is_(None)))
            if row is None:
                raise NotFound(f"fee {fee_code} has no open period", field="fee_code")
            if last_day < row.effective_from:
                raise ValidationError("the last day is before the period starts",
                                      field="effective_to")
            row.effective_to = last_day
            self.fp.audit.append(s, actor=actor, action="fees.end", object_type="fee",
                                 object_id=fee_code, details={"effective_to": last_day})
            return _to_item(row)

    @staticmethod
    def effective(s: Session, fee_code: str, day: date) -> FeeItemRow:
        row = s.scalar(select(FeeItemRow).where(
            FeeItemRow.fee_code == fee_code, FeeItemRow.effective_from <= day,
            or_(FeeItemRow.effective_to.is_(None), FeeItemRow.effective_to >= day)))
        if row is None:
            raise ValidationError(f"fee {fee_code} does not exist or is not in force on "
                                  f"{day:%d/%m/%Y}", field="items")
        return row

    def get(self, fee_code: str, day: date | None = None) -> FeeItem:
        with self.fp.db.session() as s:
            try:
                return _to_item(self.effective(s, fee_code.upper(), day or now_utc().date()))
            except ValidationError as exc:
                raise NotFound(exc.message, field="fee_code") from None

    def list(self, procedure_code: str | None = None) -> list[FeeItem]:
        with self.fp.db.session() as s:
            q = select(FeeItemRow).order_by(FeeItemRow.procedure_code, FeeItemRow.fee_code,
                                            FeeItemRow.effective_from)
            if procedure_code:
                q = q.where(FeeItemRow.procedure_code == procedure_code)
            return [_to_item(r) for r in s.scalars(q)]
