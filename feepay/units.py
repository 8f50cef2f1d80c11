"""Administrative units: the 34 provinces and 3,321 communes of the 2025 reform, plus
departments and other collecting bodies under a province.

Province and commune codes are checked against the official list shipped by
``vietnamadminunits`` 1.0.4 (Decision 19/2025/QĐ-TTg codes: 2-digit provinces, 5-digit
communes). Departments get codes under their province: ``<province>-<SUFFIX>``, e.g.
``40-STP`` (Sở Tư pháp Nghệ An). A unit that was merged away keeps working: it names a
successor and :meth:`Units.resolve` follows the chain, so references issued for the old
code go to the successor's accounts.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from feepay.exceptions import ConfigurationError, Conflict, NotFound, ValidationError
from feepay.models import UnitKind
from feepay.money import now_utc
from feepay.storage.tables import UnitRow

if TYPE_CHECKING:
    from feepay.api import FeePay

_DEPT = re.compile(r"^(\d{2})-([A-Z0-9]{2,12})$")


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    kind: str
    parent_code: str | None
    successor_code: str | None


@lru_cache(maxsize=1)
def official_units() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """``({province_code: name}, {commune_code: (name, province_code)})`` from the 2025 list."""
    provinces: dict[str, str] = {}
    communes: dict[str, tuple[str, str]] = {}
    with sqlite3.connect(f"file:{_dataset()}?mode=ro", uri=True) as conn:
        for pname, pcode, wname, wcode in conn.execute(
                "SELECT province, provinceCode, ward, wardCode FROM admin_units"):
            provinces[pcode] = pname
            communes[wcode] = (wname, pcode)
    return provinces, communes


def _dataset() -> Path:
    """The package's bundled SQLite file, read directly: importing ``vietnamadminunits``
    itself loads its address parser and geopy (seconds) which we do not need."""
    spec = importlib.util.find_spec("vietnamadminunits")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("vietnamadminunits 1.0.4 is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "dataset.db"


def _to_unit(r: UnitRow) -> Unit:
    return Unit(r.code, r.name, r.kind, r.parent_code, r.successor_code)


class Units:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def import_province(self, province_code: str, actor: str = "system") -> dict[str, int]:
        """Load a province and all its communes (idempotent). Returns counts."""
        provinces, communes = official_units()
        code = str(province_code).zfill(2)
        if code not in provinces:
            raise ValidationError(f"'{province_code}' is not one of the 34 province codes of "
                                  "the 2025 list", field="province")
        now = now_utc()
        added = 0
        with self.fp.db.session() as s:
            existing = set(s.scalars(select(UnitRow.code).where(
                (UnitRow.code == code) | (UnitRow.parent_code == code))))
            if code not in existing:
                s.add(UnitRow(code=code, name=provinces[code], kind="province",
                              created_at=now))
                s.flush()
                added += 1
            for ccode, (name, pcode) in sorted(communes.items()):
                if pcode == code and ccode not in existing:
                    s.add(UnitRow(code=ccode, name=name, kind="commune", parent_code=code,
                                  created_at=now))
                    added += 1
            if added:
                self.fp.audit.append(s, actor=actor, action="units.import", object_type="unit",
                                     object_id=code, details={"added": added})
        total = sum(1 for _c, (_n, p) in communes.items() if p == code) + 1
        return {"province": int(code), "added": added, "total": total}

    def add(self, code: str, name: str, kind: str, parent_code: str | None = None,
            actor: str = "system") -> Unit:
        """Add one unit after checking its code against the official list / its province."""
        kind = _kind(kind)
        code, name, parent_code = self._validate(code, name, kind, parent_code)
        with self.fp.db.session() as s:
            if s.get(UnitRow, code) is not None:
                raise Conflict(f"unit {code} already exists", field="code")
            if parent_code and s.get(UnitRow, parent_code) is None:
                raise ValidationError(f"parent unit {parent_code} does not exist; import the "
                                      "province first", field="parent")
            row = UnitRow(code=code, name=name, kind=kind, parent_code=parent_code,
                          created_at=now_utc())
            s.add(row)
            s.flush()
            self.fp.audit.append(s, actor=actor, action="units.add", object_type="unit",
                                 object_id=code, details={"name": name, "kind": kind})
            return _to_unit(row)

    def _validate(self, code: str, name: str, kind: str,
                  parent: str | None) -> tuple[str, str, str | None]:
        provinces, communes = official_units()
        code = (code or "").strip().upper()
        name = (name or "").strip()
        if kind == "province":
            if code not in provinces:
                raise ValidationError(f"'{code}' is not a province code of the 2025 list",
                                      field="code")
            return code, name or provinces[code], None
        if kind == "commune":
            if code not in communes:
                raise ValidationError(f"'{code}' is not a commune code of the 2025 list",
                                      field="code")
            return code, name or communes[code][0], communes[code][1]
        m = _DEPT.match(code)
        if not m:
            raise ValidationError("a department or other body has a code '<province>-<SUFFIX>' "
                                  "such as 40-STP", field="code")
        if m.group(1) not in provinces:
            raise ValidationError(f"'{m.group(1)}' is not a province code", field="code")
        if parent and parent != m.group(1):
            raise ValidationError("the code must start with its parent province's code",
                                  field="parent")
        if not name:
            raise ValidationError("a name is required", field="name")
        return code, name, m.group(1)

    def merge(self, old_code: str, successor_code: str, actor: str = "system",
              reason: str | None = None) -> Unit:
        """Record that ``old_code`` was merged into ``successor_code``."""
        with self.fp.db.session() as s:
            old = s.get(UnitRow, old_code)
            new = s.get(UnitRow, successor_code)
            if old is None or new is None:
                missing = old_code if old is None else successor_code
                raise NotFound(f"unit {missing} does not exist", field="code")
            if self._chain(s, successor_code)[-1] == old_code:
                raise ValidationError("a unit cannot succeed itself", field="successor")
            old.successor_code = successor_code
            self.fp.audit.append(s, actor=actor, action="units.merge", object_type="unit",
                                 object_id=old_code, reason=reason,
                                 details={"successor": successor_code})
            return _to_unit(old)

    @staticmethod
    def _chain(s, code: str) -> list[str]:  # noqa: ANN001
        seen = [code]
        row = s.get(UnitRow, code)
        while row is not None and row.successor_code and row.successor_code not in seen:
            seen.append(row.successor_code)
            row = s.get(UnitRow, row.successor_code)
        return seen

    def resolve(self, code: str) -> Unit:
        """The unit now responsible for ``code`` (itself, or its latest successor)."""
        with self.fp.db.session() as s:
            if s.get(UnitRow, code) is None:
                raise NotFound(f"unit {code} does not exist", field="unit")
            return _to_unit(s.get(UnitRow, self._chain(s, code)[-1]))

    def get(self, code: str) -> Unit:
        with self.fp.db.session() as s:
            row = s.get(UnitRow, code)
            if row is None:
                raise NotFound(f"unit {code} does not exist", field="unit")
            return _to_unit(row)

    def list(self, parent_code: str | None = None, kind: str | None = None) -> list[Unit]:
        with self.fp.db.session() as s:
            q = select(UnitRow).order_by(UnitRow.code)
            if parent_code:
                q = q.where(UnitRow.parent_code == parent_code)
            if kind:
                q = q.where(UnitRow.kind == _kind(kind))
            return [_to_unit(r) for r in s.scalars(q)]


def _kind(kind: str) -> str:
    try:
        return UnitKind(kind).value
    except ValueError:
        raise ValidationError(f"'{kind}' is not a unit kind (province, commune, department, "
                              "other)", field="kind") from None
