"""The audit log: append-only and hash-chained.

Each entry stores the hash of the previous entry and its own hash over
``prev_hash + canonical JSON of its fields``. Changing, deleting or reordering any entry
breaks the chain from there on; :meth:`AuditLog.verify` walks the chain and names the
first entry that does not fit. Appends are serialised (a PostgreSQL transaction-level
advisory lock; SQLite transactions already hold the write lock), so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from feepay.money import now_utc
from feepay.storage.tables import AuditRow

if TYPE_CHECKING:
    from feepay.api import FeePay

GENESIS = "0" * 64
_LOCK_KEY = 0x46454550_41554454 & 0x7FFFFFFFFFFFFFFF  # "FEEPAUDT"


def entry_hash(prev_hash: str, row: AuditRow) -> str:
    body = json.dumps({
        "at": row.at.isoformat(), "actor": row.actor, "action": row.action,
        "object_type": row.object_type, "object_id": row.object_id,
        "reason": row.reason, "details": row.details,
    }, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_broken_id: int | None = None
    reason: str | None = None


class AuditLog:
    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def append(self, session: Session, *, actor: str, action: str, object_type: str,
               object_id: str | int, reason: str | None = None,
               details: dict[str, object] | None = None) -> AuditRow:
        """Add one entry inside the caller's transaction (so it commits with the change)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        prev = session.scalar(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1))
        row = AuditRow(at=now_utc(), actor=actor, action=action, object_type=object_type,
                       object_id=str(object_id), reason=reason,
                       details=json.dumps(details or {}, sort_keys=True, ensure_ascii=False,
                                          default=str),
                       prev_hash=prev or GENESIS, hash="")
        row.hash = entry_hash(row.prev_hash, row)
        session.add(row)
        session.flush()
        return row

    def entries(self, object_type: str | None = None,
                object_id: str | None = None) -> list[dict[str, object]]:
        with self.fp.db.session() as s:
            q = select(AuditRow).order_by(AuditRow.id)
            if object_type:
                q = q.where(AuditRow.object_type == object_type)
            if object_id is not None:
                q = q.where(AuditRow.object_id == str(object_id))
            return [_as_dict(r) for r in s.scalars(q)]

    def verify(self) -> ChainReport:
        """Recompute the chain; report the first entry whose link or hash is wrong."""
        prev = GENESIS
        n = 0
        with self.fp.db.session() as s:
            for row in s.scalars(select(AuditRow).order_by(AuditRow.id)).yield_per(1000):
                n += 1
                if row.prev_hash != prev:
                    return ChainReport(False, n, row.id, "previous-hash link broken "
                                       "(an entry before it was changed or removed)")
                if entry_hash(prev, row) != row.hash:
                    return ChainReport(False, n, row.id, "entry content does not match its hash")
                prev = row.hash
        return ChainReport(True, n)


def _as_dict(r: AuditRow) -> dict[str, object]:
    return {"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
            "object_type": r.object_type, "object_id": r.object_id, "reason": r.reason,
            "details": json.loads(r.details), "hash": r.hash}
