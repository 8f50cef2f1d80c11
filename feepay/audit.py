"""The audit log: append-only and hash-chained.

Each entry stores the hash of the previous entry and its own hash over
``prev_hash + canonical JSON of its fields``. Changing, deleting or reordering any entry
breaks the chain from there on; :meth:`AuditLog.verify` walks the chain and names the
first entry that does not fit.

A chain cannot show that entries were cut off its *end*: what is left still links up.
Two checks cover that: every mismatch resolution stores the hash of its audit entry,
which must still be in the chain; and the chain's head (the last hash, which ``verify``
reports) can be kept elsewhere — a printed report, another system — and passed back as
an *anchor*, which must still be in the chain.

Appends are serialised (a PostgreSQL transaction-level advisory lock; SQLite transactions
already hold the write lock), so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from feepay.exceptions import ValidationError
from feepay.money import now_utc
from feepay.storage.tables import AuditRow

if TYPE_CHECKING:
    from feepay.api import FeePay

GENESIS = "0" * 64
_LOCK_KEY = 0x46454550_41554454 & 0x7FFFFFFFFFFFFFFF  # "FEEPAUDT"


def checked_reason(reason: str | None, *, field: str = "reason",
                   missing: str = "a reason is required") -> str:
    """A person's reason for an audited action, spaces collapsed: required, ≤ 2000 chars."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError(missing, field=field)
    if len(reason) > 2000:
        raise ValidationError("the reason is longer than 2000 characters", field=field)
    return reason


def checked_actor(actor: str | None, *,
                  missing: str = "the acting person is required (1–80 characters)") -> str:
    """The person acting, as the audit log records them: 1–80 characters."""
    actor = (actor or "").strip()
    if not actor or len(actor) > 80:
        raise ValidationError(missing, field="actor")
    return actor


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
    head: str | None = None  # the last entry's hash: keep it elsewhere, pass it as anchor


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

    def verify(self, anchor: str | None = None) -> ChainReport:
        """Recompute the chain; report the first entry whose link or hash is wrong, then
        whether entries were cut off its end (see the module docstring).

        Args:
            anchor: a head reported by an earlier ``verify``; it must still be in the chain.
        """
        prev = GENESIS
        n = 0
        found = anchor is None
        with self.fp.db.session() as s:
            for row in s.scalars(select(AuditRow).order_by(AuditRow.id)).yield_per(1000):
                n += 1
                if row.prev_hash != prev:
                    return ChainReport(False, n, row.id, "previous-hash link broken "
                                       "(an entry before it was changed or removed)")
                if entry_hash(prev, row) != row.hash:
                    return ChainReport(False, n, row.id, "entry content does not match its hash")
                prev = row.hash
                found = found or row.hash == anchor
            head = prev if n else None
            if not found:
                return ChainReport(False, n, None, f"the anchor {anchor} is not in the chain: "
                                   "entries after it were removed, or the chain was rewritten",
                                   head)
            lost = _resolutions_not_in_chain(s)
            if lost:
                return ChainReport(False, n, None, f"{len(lost)} mismatch resolution(s) name "
                                   f"audit entries no longer in the chain (first: resolution "
                                   f"#{lost[0]}): entries were removed from its end", head)
        return ChainReport(True, n, head=head)


def _resolutions_not_in_chain(s: Session) -> list[int]:
    """Ids of mismatch resolutions whose audit entry is missing from the log."""
    return list(s.scalars(text(
        "SELECT r.id FROM recon_resolutions AS r WHERE NOT EXISTS "
        "(SELECT 1 FROM audit_log AS a WHERE a.hash = r.audit_hash) ORDER BY r.id LIMIT 10")))


def _as_dict(r: AuditRow) -> dict[str, object]:
    return {"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
            "object_type": r.object_type, "object_id": r.object_id, "reason": r.reason,
            "details": json.loads(r.details), "hash": r.hash}
