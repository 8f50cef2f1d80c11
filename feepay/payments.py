"""Payment events: record what gateways and banks report, once, and move references.

:meth:`Payments.record` is the heart of the callback flow. Atomically it

1. links the event to a reference: the provider's order field (``vnp_TxnRef``,
   ``orderId``, ``app_trans_id``) or the reference code found in the memo
   (:func:`feepay.reference.find_in_text`);
2. inserts the event with ``INSERT … ON CONFLICT DO NOTHING`` on the unique key
   (adapter, provider_txn_id, status) — a second delivery inserts nothing and is reported
   as a duplicate; the database decides, never a read-then-write check;
3. for a successful payment of a payable reference — and only if step 2 inserted — adds
   the amount with a **guarded update** of the reference (``amount_paid``, then
   ``partially_paid`` | ``paid`` | ``overpaid``), on the row locked for this event, so
   concurrent payments of one reference add up exactly and the same payment is never
   counted twice;
4. flags whatever reconciliation must look at (:class:`~feepay.models.PaymentFlag`):
   unknown or ambiguous reference, amount not what was outstanding, duplicate payment of a
   paid reference, paid after expiry, reference cancelled, money on another account. The
   event is stored either way — money that arrived is a fact;
5. marks the inbox row processed.

How, per database (one statement on PostgreSQL, one transaction on SQLite), and the rules
themselves (:func:`feepay.recording.assess`): :mod:`feepay.recording`.

The payment_events table is read by reconciliation: ``status = 'success'`` rows are money
reported; ``flags`` (comma-separated, empty when clean) and ``applied`` say what happened.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from feepay import dbapi, recording
from feepay import reference as codes
from feepay.exceptions import NotFound, ValidationError
from feepay.models import (
    Channel,
    PaymentEvent,
    PaymentFlag,
    PaymentStatus,
    RecordedPayment,
    RecordResult,
)
from feepay.money import now_utc, require_aware
from feepay.recording import Link, join_flags, split_flags
from feepay.storage.tables_callbacks import GatewayOrderRow, PaymentEventRow

if TYPE_CHECKING:
    from feepay.api import FeePay
    from feepay.dbapi import Raw

__all__ = ["Payments", "find_reference", "join_flags", "split_flags"]


def find_reference(event: PaymentEvent) -> Link:
    """The reference an event points at: its order field first, then its memo."""
    if event.reference and codes.is_valid(event.reference):
        return Link(codes.compact(event.reference), ())
    for where in (event.order_id, event.memo):
        found = codes.find_in_text(where) if where else []
        if len(found) == 1:
            return Link(found[0], ())
        if len(found) > 1:
            return Link(None, (PaymentFlag.AMBIGUOUS_REFERENCE,))
    return Link(None, (PaymentFlag.UNKNOWN_REFERENCE,))


class Payments:
    """Record payment events idempotently and keep references' paid amounts exact."""

    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    # -- recording -------------------------------------------------------------------------
    def record(self, event: PaymentEvent, *, channel: Channel | None = None,
               inbox_id: int | None = None, received_at: datetime | None = None,
               txn_scope: str = "", connection: Raw | None = None) -> RecordResult:
        """Store one reported payment and apply it to its reference (see module doc).

        Atomic on its own (one statement on PostgreSQL, one transaction on SQLite; see
        :mod:`feepay.recording`), on ``connection`` when given. A second delivery of the
        same event changes nothing and reports the earlier event as a duplicate.

        ``txn_scope``: ``""`` when ``event.provider_txn_id`` is unique provider-wide; else
        the scope it is unique in (bank adapters pass their channel id — see
        :meth:`adapters.callbacks.CallbackAdapter.txn_scope`).
        """
        if event.amount < 0:
            raise ValidationError("a payment amount cannot be negative", field="amount")
        target = recording.Target(
            channel_id=channel.id if channel else None,
            account_id=channel.account_id if channel else None, inbox_id=inbox_id,
            received_at=require_aware(received_at or now_utc(), "received_at"),
            txn_scope=txn_scope)
        link = find_reference(event)
        with dbapi.connect(self.fp.db, connection) as raw:
            return recording.record(raw, event, link, target)

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
