"""People who act in feepay: admins, treasury staff (province) and unit staff.

Passwords are stored as werkzeug scrypt hashes. Roles give least privilege:
``unit`` staff act on their own unit only, ``treasury`` on the whole province (verifying
accounts, resolving mismatches), ``admin`` manages users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from feepay.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from feepay.money import now_utc
from feepay.storage.tables import UnitRow, UserRow

if TYPE_CHECKING:
    from feepay.api import FeePay

ROLES = ("admin", "treasury", "unit")
_USERNAME = re.compile(r"^[a-z0-9._-]{3,80}$")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    unit_code: str | None
    active: bool


def _to_user(r: UserRow) -> User:
    return User(r.id, r.username, r.display_name, r.role, r.unit_code, r.active)


class Users:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def add(self, username: str, password: str, role: str, *, display_name: str = "",
            unit_code: str | None = None, actor: str = "system") -> User:
        username = (username or "").strip().lower()
        if not _USERNAME.match(username):
            raise ValidationError("3–80 characters: a–z, 0–9, '.', '_' or '-'", field="username")
        if role not in ROLES:
            raise ValidationError(f"role is one of {', '.join(ROLES)}", field="role")
        if len(password or "") < MIN_PASSWORD:
            raise ValidationError(f"at least {MIN_PASSWORD} characters", field="password")
        if role == "unit" and not unit_code:
            raise ValidationError("unit staff belong to a unit", field="unit")
        with self.fp.db.session() as s:
            if unit_code and s.get(UnitRow, unit_code) is None:
                raise ValidationError(f"unit {unit_code} does not exist", field="unit")
            if s.scalar(select(UserRow.id).where(UserRow.username == username)):
                raise Conflict(f"user {username} already exists", field="username")
            row = UserRow(username=username, display_name=display_name or username,
                          password_hash=generate_password_hash(password), role=role,
                          unit_code=unit_code, active=True, created_at=now_utc())
            s.add(row)
            s.flush()
            self.fp.audit.append(s, actor=actor, action="users.add", object_type="user",
                                 object_id=username, details={"role": role, "unit": unit_code})
            return _to_user(row)

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this password, or None (same work either way)."""
        with self.fp.db.session() as s:
            row = s.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
            # hash something even for unknown users so timing does not reveal them
            stored = row.password_hash if row else generate_password_hash("x" * MIN_PASSWORD)
            ok = check_password_hash(stored, password)
            return _to_user(row) if row is not None and row.active and ok else None

    def get(self, username: str) -> User:
        with self.fp.db.session() as s:
            row = s.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                raise NotFound(f"user {username} does not exist", field="user")
            return _to_user(row)

    def list(self) -> list[User]:
        with self.fp.db.session() as s:
            return [_to_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]

    def require(self, username: str, *roles: str) -> User:
        """The active user ``username`` if their role is one of ``roles``."""
        user = self.get(username)
        if not user.active or user.role not in roles:
            raise PermissionDenied(f"{username} ({user.role}) may not do this; needs "
                                   f"{' or '.join(roles)}", field="user")
        return user
