"""Payment events: record what gateways and banks report, once, and move references.

:meth:`Payments.record` is the heart of the callback flow. In **one transaction** it

1. inserts the event with ``INSERT … ON CONFLICT DO NOTHING`` on the unique key
   (adapter, provider_txn_id, status) — a second delivery inserts nothing and is reported
   as a duplicate; the database decides, never a read-then-write check;
2. links it to a reference: the provider's order field (``vnp_TxnRef``, ``orderId``,
   ``app_trans_id``) or the reference code found in the memo
   (:func:`feepay.reference.find_in_text`);
3. for a successful payment, adds the amount with a **guarded update**::

       UPDATE payment_references
          SET amount_paid = amount_paid + :amount,
              state = CASE … partially_paid | paid | overpaid …
        WHERE code = :code AND state IN ('issued','partially_paid','paid','overpaid')
          AND (state <> 'issued' OR expires_at >= :paid_at)

   so concurrent deliveries of different payments add up exactly and the same payment is
   never counted twice (step 1 already refused it);
4. flags whatever reconciliation must look at (:class:`~feepay.models.PaymentFlag`):
   unknown or ambiguous reference, amount not what was outstanding, duplicate payment of a
   paid reference, paid after expiry, reference cancelled, money on another account. The
   event is stored either way — money that arrived is a fact;
5. marks the inbox row processed.

The payment_events table is read by reconciliation: ``status = 'success'`` rows are money
reported; ``flags`` (comma-separated, empty when clean) and ``applied`` say what happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, case, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from feepay import reference as codes
from feepay.exceptions import NotFound, ValidationError
from feepay.inbox import _transaction
from feepay.models import (
    Channel,
    InboxState,
    PaymentEvent,
    PaymentFlag,
    PaymentStatus,
    RecordedPayment,
    RecordResult,
    ReferenceState,
)
from feepay.money import now_utc, require_aware
from feepay.storage.tables import ReferenceRow
from feepay.storage.tables_callbacks import GatewayOrderRow, InboxRow, PaymentEventRow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from feepay.api import FeePay

PAYABLE = ("issued", "partially_paid", "paid", "overpaid")
OPEN = (ReferenceState.ISSUED, ReferenceState.PARTIALLY_PAID)
_TS = ReferenceRow.__table__.c.paid_at.type

# The hot path (one callback = these few statements) uses statements built once, with
# bind parameters, so SQLAlchemy compiles each of them once per process.
_EVENTS = PaymentEventRow.__table__
_REFS = ReferenceRow.__table__
_INBOX = InboxRow.__table__
_EVENT_COLUMNS = [c.name for c in _EVENTS.columns if c.name != "id"]


# Same SQL on PostgreSQL and SQLite (≥ 3.35); a text() statement so that it is compiled
# once (dialect insert().on_conflict_do_nothing() is not cacheable here).
_INSERT_EVENT = text(
    f"INSERT INTO payment_events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _EVENT_COLUMNS)}) "
    "ON CONFLICT (adapter, provider_txn_id, status) DO NOTHING RETURNING id",
).bindparams(*[bindparam(c, type_=_EVENTS.c[c].type) for c in _EVENT_COLUMNS])
_NEW_PAID = _REFS.c.amount_paid + bindparam("b_amount", type_=_REFS.c.amount_paid.type)
_PAID_AT = bindparam("b_paid_at", type_=_TS)
_APPLY = (update(_REFS)
          .where(_REFS.c.code == bindparam("b_code"), _REFS.c.state.in_(PAYABLE),
                 or_(_REFS.c.state != "issued", _REFS.c.expires_at >= _PAID_AT))
          .values(amount_paid=_NEW_PAID,
                  state=case((_REFS.c.amount_due > _NEW_PAID, "partially_paid"),
                             (_REFS.c.amount_due == _NEW_PAID, "paid"), else_="overpaid"),
                  paid_at=case((and_(_REFS.c.paid_at.is_(None),
                                     _REFS.c.amount_due <= _NEW_PAID), _PAID_AT),
                               else_=_REFS.c.paid_at))
          .returning(_REFS.c.id, _REFS.c.amount_paid, _REFS.c.amount_due, _REFS.c.state,
                     _REFS.c.expires_at, _REFS.c.account_id))
_FIND_REF = select(_REFS.c.id, _REFS.c.state, _REFS.c.amount_due, _REFS.c.amount_paid,
                   _REFS.c.expires_at).where(_REFS.c.code == bindparam("code"))
_FIND_EVENT = select(_EVENTS).where(_EVENTS.c.adapter == bindparam("adapter"),
                                    _EVENTS.c.provider_txn_id == bindparam("txn"),
                                    _EVENTS.c.status == bindparam("status"))
_INBOX_DONE = (update(_INBOX).where(_INBOX.c.id == bindparam("inbox_id"))
               .values(state=InboxState.PROCESSED.value,
                       processed_at=bindparam("b_processed_at", type_=_TS),
                       event_id=bindparam("b_event_id"), attempts=_INBOX.c.attempts + 1,
                       reason=bindparam("b_reason")))


class _Duplicate(Exception):
    """The event is already recorded: roll this transaction back (see record)."""


@dataclass(frozen=True)
class _Link:
    code: str | None
    flags: tuple[PaymentFlag, ...]


def find_reference(event: PaymentEvent) -> _Link:
    """The reference an event points at: its order field first, then its memo."""
    if event.reference and codes.is_valid(event.reference):
        return _Link(codes.compact(event.reference), ())
    for where in (event.order_id, event.memo):
        found = codes.find_in_text(where) if where else []
        if len(found) == 1:
            return _Link(found[0], ())
        if len(found) > 1:
            return _Link(None, (PaymentFlag.AMBIGUOUS_REFERENCE,))
    return _Link(None, (PaymentFlag.UNKNOWN_REFERENCE,))


def _prev_state(prev_paid: int, due: int) -> ReferenceState:
    if prev_paid <= 0:
        return ReferenceState.ISSUED
    if prev_paid < due:
        return ReferenceState.PARTIALLY_PAID
    return ReferenceState.PAID if prev_paid == due else ReferenceState.OVERPAID


def join_flags(flags: tuple[PaymentFlag, ...] | list[PaymentFlag]) -> str:
    return ",".join(sorted({f.value for f in flags}))


def split_flags(text: str | None) -> tuple[PaymentFlag, ...]:
    return tuple(PaymentFlag(f) for f in (text or "").split(",") if f)


class Payments:
    """Record payment events idempotently and keep references' paid amounts exact."""

    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    # -- recording -------------------------------------------------------------------------
    def record(self, event: PaymentEvent, *, channel: Channel | None = None,
               inbox_id: int | None = None, received_at: datetime | None = None,
               connection: Connection | None = None) -> RecordResult:
        """Store one reported payment and apply it to its reference (see module doc).

        Runs in one transaction of its own (on ``connection`` when given). The reference
        is updated first and the event inserted second: if the insert finds the event
        already there (a duplicate delivery, even one committed a moment ago by another
        worker), the whole transaction is rolled back — the update with it — and the
        existing event is reported. Nothing can be counted twice.
        """
        if event.amount < 0:
            raise ValidationError("a payment amount cannot be negative", field="amount")
        received_at = require_aware(received_at or now_utc(), "received_at")
        try:
            with _transaction(self.fp, connection) as conn:
                result = self._record(conn, event, channel, inbox_id, received_at)
                if inbox_id is not None:
                    self._inbox_done(conn, inbox_id, result)
                return result
        except _Duplicate:
            pass
        with _transaction(self.fp, connection) as conn:
            result = self._duplicate(conn, event)
            if inbox_id is not None:
                self._inbox_done(conn, inbox_id, result)
            return result

    @staticmethod
    def _inbox_done(conn: Connection, inbox_id: int, result: RecordResult) -> None:
        conn.execute(_INBOX_DONE, {
            "inbox_id": inbox_id, "b_processed_at": now_utc(), "b_event_id": result.event_id,
            "b_reason": "duplicate delivery" if result.duplicate else None})

    def _record(self, conn: Connection, event: PaymentEvent, channel: Channel | None,
                inbox_id: int | None, received_at: datetime) -> RecordResult:
        link = find_reference(event)
        if link.code is None:
            result = RecordResult(event_id=0, status=event.status, amount=event.amount,
                                  flags=link.flags)
            ref_id = None
        elif event.status is PaymentStatus.SUCCESS:
            result, ref_id = self._apply(conn, event, channel, link.code)
        else:
            result, ref_id = self._link_only(conn, event, link.code)
        event_id = self._insert(conn, event, channel, inbox_id, received_at, result, ref_id)
        if event_id is None:
            raise _Duplicate
        return result.model_copy(update={"event_id": event_id})

    @staticmethod
    def _insert(conn: Connection, event: PaymentEvent, channel: Channel | None,
                inbox_id: int | None, received_at: datetime, result: RecordResult,
                ref_id: int | None) -> int | None:
        values = dict(
            adapter=event.provider, channel_id=channel.id if channel else None,
            account_id=channel.account_id if channel else None,
            provider_txn_id=event.provider_txn_id, status=event.status.value,
            reference_id=ref_id, reference_code=result.reference,
            order_id=(event.order_id or None) and event.order_id[:100],
            amount=event.amount, paid_at=event.paid_at, memo=event.memo,
            payer_name=(event.payer_name or None) and event.payer_name[:200],
            payer_account=(event.payer_account or None) and event.payer_account[:40],
            account_number=(event.account_number or None) and event.account_number[:40],
            bank_ref=(event.bank_ref or None) and event.bank_ref[:100],
            flags=join_flags(result.flags), applied=result.applied, received_at=received_at,
            inbox_id=inbox_id,
            raw=json.dumps(event.raw, ensure_ascii=False, sort_keys=True, default=str))
        return conn.execute(_INSERT_EVENT, values).scalar()

    @staticmethod
    def _duplicate(conn: Connection, event: PaymentEvent) -> RecordResult:
        row = conn.execute(_FIND_EVENT, {"adapter": event.provider,
                                         "txn": event.provider_txn_id,
                                         "status": event.status.value}).one()
        return RecordResult(event_id=row.id, duplicate=True, status=event.status,
                            amount=row.amount, reference=row.reference_code,
                            reference_found=row.reference_id is not None,
                            applied=row.applied, flags=split_flags(row.flags))

    def _apply(self, conn: Connection, event: PaymentEvent, channel: Channel | None,
               code: str) -> tuple[RecordResult, int | None]:
        amount = event.amount
        row = conn.execute(_APPLY, {"b_code": code, "b_amount": amount,
                                    "b_paid_at": event.paid_at}).first()
        if row is None:
            return self._link_only(conn, event, code)
        before = _prev_state(row.amount_paid - amount, row.amount_due)
        expected = (row.amount_due - (row.amount_paid - amount) if before in OPEN
                    else row.amount_due)
        flags: list[PaymentFlag] = []
        if amount != expected:
            flags.append(PaymentFlag.AMOUNT_MISMATCH)
        if before not in OPEN:
            flags.append(PaymentFlag.DUPLICATE_PAYMENT)
        if event.paid_at > row.expires_at:
            flags.append(PaymentFlag.PAID_AFTER_EXPIRY)
        if channel and channel.account_id and channel.account_id != row.account_id:
            flags.append(PaymentFlag.ACCOUNT_MISMATCH)
        return RecordResult(event_id=0, status=event.status, amount=amount,
                            reference=code, reference_found=True, state_before=before,
                            state_after=ReferenceState(row.state), expected_amount=expected,
                            applied=True, flags=tuple(flags)), row.id

    @staticmethod
    def _link_only(conn: Connection, event: PaymentEvent,
                   code: str) -> tuple[RecordResult, int | None]:
        """Link without moving money: a failed/pending event, or an unpayable reference."""
        ref = conn.execute(_FIND_REF, {"code": code}).first()
        if ref is None:
            return RecordResult(event_id=0, status=event.status, amount=event.amount,
                                reference=code, flags=(PaymentFlag.UNKNOWN_REFERENCE,)), None
        state = ReferenceState(ref.state)
        open_ = state in OPEN or state is ReferenceState.EXPIRED
        expected = ref.amount_due - ref.amount_paid if open_ else ref.amount_due
        flags: list[PaymentFlag] = []
        if event.status is PaymentStatus.SUCCESS:
            if state is ReferenceState.CANCELLED:
                flags.append(PaymentFlag.REFERENCE_CANCELLED)
            elif state is ReferenceState.SETTLED:
                flags.append(PaymentFlag.DUPLICATE_PAYMENT)
            if state is ReferenceState.EXPIRED or event.paid_at > ref.expires_at:
                flags.append(PaymentFlag.PAID_AFTER_EXPIRY)
            if event.amount != expected:
                flags.append(PaymentFlag.AMOUNT_MISMATCH)
        return RecordResult(event_id=0, status=event.status, amount=event.amount,
                            reference=code, reference_found=True, state_before=state,
                            state_after=state, expected_amount=expected,
                            flags=tuple(flags)), ref.id

    # -- reading ---------------------------------------------------------------------------
    def get(self, event_id: int) -> RecordedPayment:
        with self.fp.db.session() as s:
            row = s.get(PaymentEventRow, event_id)
            if row is None:
                raise NotFound(f"no payment event {event_id}", field="event_id")
            return _to_model(row)

    def list(self, *, reference: str | None = None, channel_id: int | None = None,
             flagged: bool | None = None, limit: int = 1000) -> list[RecordedPayment]:
        with self.fp.db.session() as s:
            q = select(PaymentEventRow).order_by(PaymentEventRow.id).limit(limit)
            if reference is not None:
                q = q.where(PaymentEventRow.reference_code == codes.compact(reference))
            if channel_id is not None:
                q = q.where(PaymentEventRow.channel_id == channel_id)
            if flagged is True:
                q = q.where(PaymentEventRow.flags != "")
            elif flagged is False:
                q = q.where(PaymentEventRow.flags == "")
            return [_to_model(r) for r in s.scalars(q)]

    # -- gateway orders (for gateways that only call back on success) -----------------------
    def open_order(self, channel: Channel, order_id: str, amount: int, *,
                   reference_code: str | None = None, ttl: timedelta = timedelta(minutes=20),
                   now: datetime | None = None) -> None:
        """Note an order opened at a gateway so the poller asks about it (idempotent)."""
        now = require_aware(now or now_utc(), "now")
        code = reference_code or next(iter(codes.find_in_text(order_id)), None)
        values = dict(channel_id=channel.id, order_id=order_id, reference_code=code,
                      amount=amount, state="open", created_at=now, expires_at=now + ttl,
                      polls=0)
        with self.fp.db.session() as s:
            ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(ins(GatewayOrderRow).values(**values).on_conflict_do_nothing(
                index_elements=["channel_id", "order_id"]))

    def orders_to_poll(self, channel: Channel, *, now: datetime | None = None,
                       limit: int = 200) -> list[str]:
        """Open orders of a channel; orders past expiry with no payment become ``expired``.

        An order whose success event is already recorded (the callback came) is closed
        as ``paid`` without asking the gateway.
        """
        now = require_aware(now or now_utc(), "now")
        with self.fp.db.session() as s:
            paid = select(PaymentEventRow.id).where(
                PaymentEventRow.channel_id == channel.id,
                PaymentEventRow.order_id == GatewayOrderRow.order_id,
                PaymentEventRow.status == "success").exists()
            s.execute(update(GatewayOrderRow).where(
                GatewayOrderRow.channel_id == channel.id, GatewayOrderRow.state == "open",
                paid).values(state="paid").execution_options(synchronize_session=False))
            return list(s.scalars(select(GatewayOrderRow.order_id).where(
                GatewayOrderRow.channel_id == channel.id, GatewayOrderRow.state == "open")
                .order_by(GatewayOrderRow.id).limit(limit)))

    def close_order(self, channel: Channel, order_id: str, state: str, *,
                    now: datetime | None = None) -> None:
        """Record a poll: ``paid``/``failed`` close the order, ``open`` counts the poll and
        expires it once past its expiry (plus a grace for late payments)."""
        now = require_aware(now or now_utc(), "now")
        with self.fp.db.session() as s:
            row = s.scalar(select(GatewayOrderRow).where(
                GatewayOrderRow.channel_id == channel.id, GatewayOrderRow.order_id == order_id))
            if row is None or row.state != "open":
                return
            row.polls += 1
            row.polled_at = now
            if state in ("paid", "failed"):
                row.state = state
            elif now > row.expires_at + timedelta(minutes=15):
                row.state = "expired"


def _to_model(row: PaymentEventRow) -> RecordedPayment:
    return RecordedPayment(
        id=row.id, adapter=row.adapter, channel_id=row.channel_id, account_id=row.account_id,
        provider_txn_id=row.provider_txn_id, status=PaymentStatus(row.status),
        reference_id=row.reference_id, reference_code=row.reference_code,
        order_id=row.order_id, amount=row.amount, paid_at=row.paid_at, memo=row.memo,
        payer_name=row.payer_name, payer_account=row.payer_account, bank_ref=row.bank_ref,
        flags=split_flags(row.flags), applied=row.applied, received_at=row.received_at,
        inbox_id=row.inbox_id)
