"""Recording one payment event: the rules, and the statements that apply them atomically.

This is the hot path of every callback, written against the DB-API connection
(:mod:`feepay.dbapi`) with one implementation per dialect:

**PostgreSQL — one statement, one round trip** (autocommit: the statement is the
transaction). Its data-modifying CTEs

1. ``ref``: lock the reference row (``SELECT … FOR UPDATE``: concurrent payments of one
   reference queue here, and each sees the amounts the previous one committed);
2. ``ins``: insert the event ``ON CONFLICT (adapter, txn_scope, provider_txn_id, status)
   DO NOTHING``, its ``applied`` and ``flags`` computed from the locked row — the unique constraint
   decides what is a duplicate, never a read-then-write;
3. ``upd``: the guarded update of the reference — only if ``ins`` inserted the event and
   the event applies, so a duplicate delivery cannot count twice;
4. ``inb``: mark the inbox row processed, again only if ``ins`` inserted.

A duplicate delivery (``ins`` empty, nothing changed) then costs a second statement that
reads the earlier event and marks the inbox row (:data:`PG_DUPLICATE`).

**SQLite — one transaction** (``BEGIN IMMEDIATE`` holds the database's single write lock,
so reading the reference and then writing is safe): read the reference, decide in Python
(:func:`assess`), insert the event ``ON CONFLICT DO NOTHING``, update the reference and the
inbox row; a duplicate reads the earlier event instead.

:func:`assess` is the rule book in Python; the PostgreSQL statement computes the stored
``applied`` and ``flags`` with the same rules in SQL, and the result PostgreSQL returns is
turned into a :class:`~feepay.models.RecordResult` by :func:`assess` from the locked row's
values — tests run every rule on both databases and compare.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from feepay import dbapi
from feepay.models import (
    PaymentEvent,
    PaymentFlag,
    PaymentStatus,
    RecordResult,
    ReferenceState,
)
from feepay.money import now_utc

if TYPE_CHECKING:
    from feepay.dbapi import Raw

log = logging.getLogger(__name__)

PAYABLE = ("issued", "partially_paid", "paid", "overpaid")
OPEN = (ReferenceState.ISSUED, ReferenceState.PARTIALLY_PAID)


@dataclass(frozen=True)
class Link:
    """The reference an event points at (``code``), or why none (``flags``)."""

    code: str | None
    flags: tuple[PaymentFlag, ...]


@dataclass(frozen=True)
class RefBefore:
    """The reference row as it was just before this event (locked / write-locked);
    ``late``: the event was paid after the reference's ``expires_at``."""

    id: int
    state: str
    amount_due: int
    amount_paid: int
    late: bool
    account_id: int | None


@dataclass(frozen=True)
class Target:
    """Where the event comes from and goes: channel, inbox row, time of receipt.

    ``txn_scope`` is part of the idempotency key: ``""`` when the provider's transaction
    ids are unique provider-wide (gateways), the channel id when they are unique only per
    source account (banks: two banks may both send ``id`` 42).

    ``account_id`` is the channel's collection account; flags compare it with the
    reference's. The event stores it or, when there is none (no channel, or a gateway
    channel serving no one account), its reference's account: reconciliation reads an
    account's callbacks by that column alone.
    """

    channel_id: int | None
    account_id: int | None
    inbox_id: int | None
    received_at: datetime
    txn_scope: str = ""


# --- the rules -------------------------------------------------------------------------------

def join_flags(flags: tuple[PaymentFlag, ...] | list[PaymentFlag]) -> str:
    return ",".join(sorted({f.value for f in flags}))


def split_flags(text: str | None) -> tuple[PaymentFlag, ...]:
    return tuple(PaymentFlag(f) for f in (text or "").split(",") if f)


def _prev_state(prev_paid: int, due: int) -> ReferenceState:
    if prev_paid <= 0:
        return ReferenceState.ISSUED
    if prev_paid < due:
        return ReferenceState.PARTIALLY_PAID
    return ReferenceState.PAID if prev_paid == due else ReferenceState.OVERPAID


def applies(event: PaymentEvent, ref: RefBefore) -> bool:
    """The guarded update's condition: a success, a payable state, not issued-and-expired."""
    return (event.status is PaymentStatus.SUCCESS and ref.state in PAYABLE
            and (ref.state != "issued" or not ref.late))


def assess(event: PaymentEvent, link: Link, ref: RefBefore | None,
           account_id: int | None) -> RecordResult:
    """What recording ``event`` does, given the reference row before it (Python twin of
    the SQL in :data:`PG_RECORD`; ``event_id`` is left 0).

    Money that arrived is a fact: an event that does not apply is still stored, flagged.
    """
    base = {"event_id": 0, "status": event.status, "amount": event.amount}
    if link.code is None:
        return RecordResult(**base, flags=link.flags)
    if ref is None:
        return RecordResult(**base, reference=link.code,
                            flags=(PaymentFlag.UNKNOWN_REFERENCE,))
    amount, due, paid = event.amount, ref.amount_due, ref.amount_paid
    flags: list[PaymentFlag] = []
    if applies(event, ref):
        before = _prev_state(paid, due)
        expected = due - paid if before in OPEN else due
        new_paid = paid + amount
        after = (ReferenceState.PARTIALLY_PAID if due > new_paid else
                 ReferenceState.PAID if due == new_paid else ReferenceState.OVERPAID)
        if account_id and account_id != ref.account_id:
            flags.append(PaymentFlag.ACCOUNT_MISMATCH)
        if amount != expected:
            flags.append(PaymentFlag.AMOUNT_MISMATCH)
        if before not in OPEN:
            flags.append(PaymentFlag.DUPLICATE_PAYMENT)
        if ref.late:
            flags.append(PaymentFlag.PAID_AFTER_EXPIRY)
        return RecordResult(**base, reference=link.code, reference_found=True,
                            state_before=before, state_after=after, expected_amount=expected,
                            applied=True, flags=tuple(flags))
    state = ReferenceState(ref.state)  # linked, no money moved: failed/pending/unpayable
    open_ = state in OPEN or state is ReferenceState.EXPIRED
    expected = due - paid if open_ else due
    if event.status is PaymentStatus.SUCCESS:
        if amount != expected:
            flags.append(PaymentFlag.AMOUNT_MISMATCH)
        if state is ReferenceState.SETTLED:
            flags.append(PaymentFlag.DUPLICATE_PAYMENT)
        if state is ReferenceState.EXPIRED or ref.late:
            flags.append(PaymentFlag.PAID_AFTER_EXPIRY)
        if state is ReferenceState.CANCELLED:
            flags.append(PaymentFlag.REFERENCE_CANCELLED)
    return RecordResult(**base, reference=link.code, reference_found=True,
                        state_before=state, state_after=state, expected_amount=expected,
                        flags=tuple(flags))


# --- the statements --------------------------------------------------------------------------

_EVENT_COLUMNS = ("adapter, txn_scope, channel_id, account_id, provider_txn_id, status, "
                  "reference_id, reference_code, order_id, amount, paid_at, memo, payer_name, "
                  "payer_account, account_number, bank_ref, flags, applied, received_at, "
                  "inbox_id, raw")
_NEW_PAID = "amount_paid + :amount"
_APPLY_SET = f"""
    amount_paid = {_NEW_PAID},
    state = CASE WHEN amount_due > {_NEW_PAID} THEN 'partially_paid'
                 WHEN amount_due = {_NEW_PAID} THEN 'paid' ELSE 'overpaid' END,
    paid_at = CASE WHEN paid_at IS NULL AND amount_due <= {_NEW_PAID} THEN :paid_at
                   ELSE paid_at END"""
_PAYABLE_SQL = ", ".join(f"'{s}'" for s in PAYABLE)

_EVENT_TYPES = {"adapter": "text", "scope": "text", "channel_id": "int", "account_id": "int",
                "txn": "text",
                "status": "text", "code": "text", "order_id": "text", "amount": "int",
                "paid_at": "ts", "memo": "text", "payer_name": "text",
                "payer_account": "text", "account_number": "text", "bank_ref": "text",
                "received_at": "ts", "inbox_id": "int", "raw": "text", "now": "ts"}

# Flags in SQL, alphabetical like join_flags (concat_ws skips NULLs). Same rules as assess().
PG_RECORD = dbapi.Statement("record", f"""
WITH ref AS (
    SELECT id, state, amount_due, amount_paid, expires_at < :paid_at AS late, account_id,
           (:success AND state IN ({_PAYABLE_SQL})
            AND (state <> 'issued' OR expires_at >= :paid_at)) AS applies
      FROM payment_references WHERE code = :code
       FOR UPDATE
), ins AS (
    INSERT INTO payment_events ({_EVENT_COLUMNS})
    SELECT :adapter, :scope, :channel_id, COALESCE(:account_id, r.account_id), :txn, :status,
           r.id, :code, :order_id,
           :amount, :paid_at, :memo, :payer_name, :payer_account, :account_number,
           :bank_ref,
           CASE WHEN r.id IS NULL THEN :no_ref_flags
                WHEN r.applies THEN concat_ws(',',
                    CASE WHEN :account_id <> r.account_id THEN 'account_mismatch' END,
                    CASE WHEN :amount <> CASE WHEN r.amount_paid < r.amount_due
                                              THEN r.amount_due - r.amount_paid
                                              ELSE r.amount_due END
                         THEN 'amount_mismatch' END,
                    CASE WHEN r.amount_paid >= r.amount_due THEN 'duplicate_payment' END,
                    CASE WHEN r.late THEN 'paid_after_expiry' END)
                WHEN :success THEN concat_ws(',',
                    CASE WHEN :amount <> CASE WHEN r.state IN ('issued', 'partially_paid',
                                                               'expired')
                                              THEN r.amount_due - r.amount_paid
                                              ELSE r.amount_due END
                         THEN 'amount_mismatch' END,
                    CASE WHEN r.state = 'settled' THEN 'duplicate_payment' END,
                    CASE WHEN r.state = 'expired' OR r.late THEN 'paid_after_expiry' END,
                    CASE WHEN r.state = 'cancelled' THEN 'reference_cancelled' END)
                ELSE '' END,
           COALESCE(r.applies, false), :received_at, :inbox_id, :raw
      FROM (SELECT 1) AS one LEFT JOIN ref r ON true
    ON CONFLICT (adapter, txn_scope, provider_txn_id, status) DO NOTHING
    RETURNING id, flags, applied, reference_id
), upd AS (
    UPDATE payment_references SET {_APPLY_SET}
     WHERE id = (SELECT reference_id FROM ins WHERE applied)
    RETURNING state
), inb AS (
    UPDATE callback_inbox
       SET state = 'processed', processed_at = :now, event_id = ins.id,
           attempts = callback_inbox.attempts + 1, reason = NULL
      FROM ins WHERE callback_inbox.id = :inbox_id
)
SELECT ins.id, ins.flags, ins.applied, r.id, r.state, r.amount_due, r.amount_paid, r.late,
       r.account_id, (SELECT state FROM upd)
  FROM (SELECT 1) AS one LEFT JOIN ins ON true LEFT JOIN ref r ON true
""", {**_EVENT_TYPES, "success": "bool", "no_ref_flags": "text"})
PG_DUPLICATE = dbapi.Statement("record_duplicate", """
WITH ev AS (
    SELECT id, amount, reference_code, reference_id, applied, flags FROM payment_events
     WHERE adapter = :adapter AND txn_scope = :scope AND provider_txn_id = :txn
       AND status = :status
), inb AS (
    UPDATE callback_inbox
       SET state = 'processed', processed_at = :now, event_id = ev.id,
           attempts = callback_inbox.attempts + 1, reason = 'duplicate delivery'
      FROM ev WHERE callback_inbox.id = :inbox_id
)
SELECT id, amount, reference_code, reference_id, applied, flags FROM ev
""", _EVENT_TYPES)
_LITE_REF = dbapi.Statement("sqlite_ref", """
SELECT id, state, amount_due, amount_paid, expires_at < :paid_at, account_id
  FROM payment_references WHERE code = :code
""", _EVENT_TYPES)
_LITE_INSERT = dbapi.Statement("sqlite_insert", f"""
INSERT INTO payment_events ({_EVENT_COLUMNS})
VALUES (:adapter, :scope, :channel_id, :account_id, :txn, :status, :reference_id, :code, :order_id,
        :amount, :paid_at, :memo, :payer_name, :payer_account, :account_number, :bank_ref,
        :flags, :applied, :received_at, :inbox_id, :raw)
ON CONFLICT (adapter, txn_scope, provider_txn_id, status) DO NOTHING
RETURNING id
""", {**_EVENT_TYPES, "reference_id": "int", "flags": "text", "applied": "bool"})
_LITE_APPLY = dbapi.Statement(
    "sqlite_apply", f"UPDATE payment_references SET {_APPLY_SET} WHERE id = :reference_id",
    {**_EVENT_TYPES, "reference_id": "int"})
_LITE_EXISTING = dbapi.Statement("sqlite_existing", """
SELECT id, amount, reference_code, reference_id, applied, flags FROM payment_events
 WHERE adapter = :adapter AND txn_scope = :scope AND provider_txn_id = :txn
       AND status = :status
""", _EVENT_TYPES)
_LITE_INBOX = dbapi.Statement("sqlite_inbox_done", """
UPDATE callback_inbox
   SET state = 'processed', processed_at = :now, event_id = :event_id,
       attempts = attempts + 1, reason = :reason
 WHERE id = :inbox_id
""", {**_EVENT_TYPES, "event_id": "int", "reason": "text"})


def _params(raw: Raw, event: PaymentEvent, link: Link, target: Target) -> dict[str, object]:
    return {
        "adapter": event.provider, "scope": target.txn_scope,
        "channel_id": target.channel_id,
        "account_id": target.account_id, "txn": event.provider_txn_id,
        "status": event.status.value, "code": link.code,
        "order_id": (event.order_id or None) and event.order_id[:100],
        "amount": event.amount, "paid_at": raw.ts(event.paid_at), "memo": event.memo,
        "payer_name": (event.payer_name or None) and event.payer_name[:200],
        "payer_account": (event.payer_account or None) and event.payer_account[:40],
        "account_number": (event.account_number or None) and event.account_number[:40],
        "bank_ref": (event.bank_ref or None) and event.bank_ref[:100],
        "received_at": raw.ts(target.received_at), "inbox_id": target.inbox_id,
        "raw": json.dumps(event.raw, ensure_ascii=False, sort_keys=True, default=str),
        "now": raw.ts(now_utc())}


def record(raw: Raw, event: PaymentEvent, link: Link, target: Target) -> RecordResult:
    """Store ``event`` once, apply it, mark its inbox row (see the module doc)."""
    params = _params(raw, event, link, target)
    if raw.postgres:
        return _record_postgres(raw, event, link, target, params)
    return _record_sqlite(raw, event, link, target, params)


def _record_postgres(raw: Raw, event: PaymentEvent, link: Link, target: Target,
                     params: dict[str, object]) -> RecordResult:
    params["success"] = event.status is PaymentStatus.SUCCESS
    params["no_ref_flags"] = (join_flags(link.flags) if link.code is None
                              else PaymentFlag.UNKNOWN_REFERENCE.value)
    row = raw.one(PG_RECORD, params)
    event_id, flags, applied = row[0], row[1], row[2]
    if event_id is None:  # already recorded: nothing above changed anything
        return _existing(raw.one(PG_DUPLICATE, params), event.status)
    ref = RefBefore(*row[3:9]) if row[3] is not None else None
    result = assess(event, link, ref, target.account_id)
    if (result.applied, join_flags(result.flags)) != (applied, flags):  # pragma: no cover
        log.error("event %s: stored applied=%s flags=%r, rules say %s %r", event_id,
                  applied, flags, result.applied, join_flags(result.flags))
    return result.model_copy(update={"event_id": event_id, "applied": applied,
                                     "flags": split_flags(flags)})


def _record_sqlite(raw: Raw, event: PaymentEvent, link: Link, target: Target,
                   params: dict[str, object]) -> RecordResult:
    with raw.transaction():  # BEGIN IMMEDIATE: the write lock, so read-then-write is safe
        found = raw.one(_LITE_REF, params) if link.code is not None else None
        ref = (RefBefore(found[0], found[1], found[2], found[3], bool(found[4]), found[5])
               if found else None)
        result = assess(event, link, ref, target.account_id)
        params.update(reference_id=ref.id if ref else None,
                      flags=join_flags(result.flags), applied=result.applied)
        if params["account_id"] is None and ref is not None:
            params["account_id"] = ref.account_id  # stored: see Target.account_id
        inserted = raw.one(_LITE_INSERT, params)
        if inserted is None:  # already recorded (nothing written yet in this transaction)
            result = _existing(raw.one(_LITE_EXISTING, params), event.status)
            params.update(event_id=result.event_id, reason="duplicate delivery")
        else:
            result = result.model_copy(update={"event_id": inserted[0]})
            if result.applied:
                raw.run(_LITE_APPLY, params)
            params.update(event_id=inserted[0], reason=None)
        if target.inbox_id is not None:
            raw.run(_LITE_INBOX, params)
    return result


def _existing(row: tuple | None, status: PaymentStatus) -> RecordResult:
    if row is None:  # pragma: no cover - a conflict without a row: nothing to report
        raise RuntimeError("the conflicting payment event is not visible")
    event_id, amount, code, reference_id, applied, flags = row
    return RecordResult(event_id=event_id, duplicate=True, status=status,
                        amount=amount, reference=code, reference_found=reference_id is not None,
                        applied=bool(applied), flags=split_flags(flags))
