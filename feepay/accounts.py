"""Collection accounts (tài khoản chuyên thu): where a unit's fees are paid.

A unit registers one or more bank accounts. Each has a lifecycle::

    pending ──verify (treasury user)──▶ verified ──activate──▶ active ──retire──▶ retired

Only ``active`` accounts, valid on the day and accepting the fee kind, receive new
references. Full account numbers are sealed at rest (Fernet) with a keyed blind index for
uniqueness; everything shows them masked except the VietQR payload, which needs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from feepay.banks import get_bank, mask, validate_account_number
from feepay.exceptions import Conflict, NoCollectionAccount, NotFound, ValidationError
from feepay.models import AccountState, FeeKind
from feepay.money import now_utc
from feepay.storage.tables import AccountRow, UnitRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

_CUTOFF = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Account:
    id: int
    unit_code: str
    bank_bin: str
    bank_name: str
    number_masked: str
    holder_name: str
    fee_kinds: tuple[str, ...]
    valid_from: date
    valid_to: date | None
    state: str
    cutoff: str
    verified_by: str | None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def parse_fee_kinds(value: str | list[str] | tuple[str, ...]) -> str:
    """``"phi"``, ``"le_phi"``, ``"both"`` or a list → the stored form ``phi,le_phi``."""
    items = value.replace(" ", "").split(",") if isinstance(value, str) else list(value)
    if items == ["both"]:
        items = ["phi", "le_phi"]
    try:
        kinds = {FeeKind(k.replace("-", "_")).value for k in items}
    except ValueError:
        raise ValidationError("fee kinds are phi, le_phi or both", field="fee_kinds") from None
    return ",".join(k for k in ("phi", "le_phi") if k in kinds)


def to_account(r: AccountRow) -> Account:
    bank = get_bank(r.bank_bin)
    return Account(r.id, r.unit_code, r.bank_bin, bank.short_name,
                   "•" * (r.number_length - 4) + r.number_last4, r.holder_name,
                   tuple(r.fee_kinds.split(",")), r.valid_from, r.valid_to, r.state, r.cutoff,
                   r.verified_by)


class Accounts:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def register(self, unit_code: str, bank_bin: str, account_number: str, holder_name: str,
                 fee_kinds: str | list[str] = "both", valid_from: date | None = None,
                 valid_to: date | None = None, cutoff: str = "23:59",
                 actor: str = "system") -> Account:
        """Register an account in state ``pending``; every field is validated first."""
        bank = get_bank(bank_bin)
        number = validate_account_number(bank, account_number)
        holder = " ".join((holder_name or "").split())
        if not 2 <= len(holder) <= 200:
            raise ValidationError("the account holder's name is required", field="holder_name")
        kinds = parse_fee_kinds(fee_kinds)
        valid_from = valid_from or now_utc().date()
        if valid_to is not None and valid_to < valid_from:
            raise ValidationError("valid_to is before valid_from", field="valid_to")
        if not _CUTOFF.match(cutoff):
            raise ValidationError("cut-off is a local time HH:MM", field="cutoff")
        index = self.fp.sealer.index(f"{bank.bin}:{number}")
        with self.fp.db.session() as s:
            if s.get(UnitRow, unit_code) is None:
                raise ValidationError(f"unit {unit_code} does not exist", field="unit")
            if s.scalar(select(AccountRow.id).where(AccountRow.number_index == index)):
                raise Conflict(f"account {mask(number)} at {bank.short_name} is already "
                               "registered", field="account_number")
            row = AccountRow(unit_code=unit_code, bank_bin=bank.bin,
                             number_enc=self.fp.sealer.seal(number), number_last4=number[-4:],
                             number_length=len(number), number_index=index,
                             holder_name=holder, fee_kinds=kinds, valid_from=valid_from,
                             valid_to=valid_to, state="pending", cutoff=cutoff,
                             created_at=now_utc())
            s.add(row)
            s.flush()
            self.fp.audit.append(s, actor=actor, action="accounts.register",
                                 object_type="account", object_id=row.id,
                                 details={"unit": unit_code, "bank": bank.bin,
                                          "number": mask(number), "fee_kinds": kinds})
            return to_account(row)

    def _move(self, account_id: int, frm: tuple[str, ...], to: str, actor: str,
              reason: str | None = None, **values: object) -> Account:
        with self.fp.db.session() as s:
            res = s.execute(update(AccountRow)
                            .where(AccountRow.id == account_id, AccountRow.state.in_(frm))
                            .values(state=to, **values))
            if res.rowcount != 1:
                row = s.get(AccountRow, account_id)
                if row is None:
                    raise NotFound(f"account {account_id} does not exist", field="account")
                raise Conflict(f"account {account_id} is {row.state}; it must be "
                               f"{' or '.join(frm)} to become {to}", field="state")
            self.fp.audit.append(s, actor=actor, action=f"accounts.{to}",
                                 object_type="account", object_id=account_id, reason=reason)
            return to_account(s.get(AccountRow, account_id))

    def verify(self, account_id: int, by: str) -> Account:
        """A treasury user (or admin) confirms the account really is the unit's."""
        self.fp.users.require(by, "treasury", "admin")
        return self._move(account_id, ("pending",), AccountState.VERIFIED, by,
                          verified_by=by, verified_at=now_utc())

    def activate(self, account_id: int, actor: str = "system") -> Account:
        return self._move(account_id, ("verified",), AccountState.ACTIVE, actor)

    def retire(self, account_id: int, actor: str = "system", reason: str | None = None) -> Account:
        return self._move(account_id, ("pending", "verified", "active"),
                          AccountState.RETIRED, actor, reason, retired_at=now_utc())

    def get(self, account_id: int) -> Account:
        with self.fp.db.session() as s:
            row = s.get(AccountRow, account_id)
            if row is None:
                raise NotFound(f"account {account_id} does not exist", field="account")
            return to_account(row)

    def list(self, unit_code: str | None = None, state: str | None = None) -> list[Account]:
        with self.fp.db.session() as s:
            q = select(AccountRow).order_by(AccountRow.id)
            if unit_code:
                q = q.where(AccountRow.unit_code == unit_code)
            if state:
                q = q.where(AccountRow.state == state)
            return [to_account(r) for r in s.scalars(q)]

    def full_number(self, account_id: int) -> str:
        """The full account number, decrypted: only for VietQR and statement matching."""
        with self.fp.db.session() as s:
            row = s.get(AccountRow, account_id)
            if row is None:
                raise NotFound(f"account {account_id} does not exist", field="account")
            return self.fp.sealer.open(row.number_enc)

    def find_by_number(self, bank_bin: str | None, number: str) -> Account | None:
        """The registered account with this number (at this bank, or any bank)."""
        bins = [bank_bin] if bank_bin else [a.bank_bin for a in self.list()]
        with self.fp.db.session() as s:
            for b in dict.fromkeys(bins):
                row = s.scalar(select(AccountRow).where(
                    AccountRow.number_index == self.fp.sealer.index(f"{b}:{number}")))
                if row is not None:
                    return to_account(row)
        return None

    @staticmethod
    def choose(s: Session, unit_code: str, kinds: set[str], day: date) -> AccountRow:
        """The active account of ``unit_code`` accepting all ``kinds`` on ``day``.

        Several fit → the oldest (lowest id), so the choice is stable.
        """
        rows = s.scalars(select(AccountRow).where(
            AccountRow.unit_code == unit_code, AccountRow.state == "active",
            AccountRow.valid_from <= day).order_by(AccountRow.id))
        for row in rows:
            if (row.valid_to is None or row.valid_to >= day) and kinds <= set(
                    row.fee_kinds.split(",")):
                return row
        raise NoCollectionAccount(
            f"unit {unit_code} has no active collection account for "
            f"{' + '.join(sorted(kinds))} on {day:%d/%m/%Y}", field="competent_unit")
