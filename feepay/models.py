"""Pydantic models at feepay's boundaries: what adapters produce and the engine consumes.

ORM rows never leave ``feepay.storage``; services hand out these frozen values instead.
Money is ``int`` VND; datetimes are aware (pydantic ``AwareDatetime``).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeeKind(StrEnum):
    """phí (a fee for a public service) or lệ phí (a state-management charge)."""

    PHI = "phi"
    LE_PHI = "le_phi"


class UnitKind(StrEnum):
    PROVINCE = "province"
    COMMUNE = "commune"        # xã, phường, đặc khu
    DEPARTMENT = "department"  # provincial department (sở, ban, ngành)
    OTHER = "other"            # any other collecting body


class AccountState(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    ACTIVE = "active"
    RETIRED = "retired"


class ReferenceState(StrEnum):
    """Lifecycle of a payment reference (see docs/concepts.md)."""

    ISSUED = "issued"                  # waiting for money
    PARTIALLY_PAID = "partially_paid"  # some money reported, less than due
    PAID = "paid"                      # reported paid in full (callback or statement)
    OVERPAID = "overpaid"              # reported more than due
    SETTLED = "settled"                # money seen on the bank statement by reconciliation
    CANCELLED = "cancelled"            # withdrawn by the case system; late money is a mismatch
    EXPIRED = "expired"


class PaymentStatus(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    PENDING = "pending"


class Direction(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


class ReferenceItem(_Frozen):
    """One fee line of a reference, frozen at issue time (amount and retention as then)."""

    fee_code: str
    name: str
    kind: FeeKind
    amount: int
    retention_bp: int = Field(ge=0, le=10000, description="retained share in basis points")


class PaymentReference(_Frozen):
    """What a case system gets back from ``references.issue``."""

    id: int
    code: str
    dossier_code: str
    competent_unit: str
    receiving_unit: str | None
    account_id: int
    bank_bin: str
    account_masked: str
    account_holder: str
    amount_due: int
    amount_paid: int
    state: ReferenceState
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    memo: str
    vietqr: str
    items: tuple[ReferenceItem, ...]

    @property
    def display_code(self) -> str:
        from feepay.reference import format as fmt

        return fmt(self.code)

    def qr_svg(self) -> str:
        from feepay.vietqr import render_svg

        return render_svg(self.vietqr)

    def qr_png(self) -> bytes:
        from feepay.vietqr import render_png

        return render_png(self.vietqr)


class PaymentEvent(_Frozen):
    """A payment reported by a gateway or a bank push, as parsed by an adapter.

    Attributes:
        provider: adapter name (``vnpay``, ``momo``, ``zalopay``, ``sepay``, ``casso``,
            ``bankhook``).
        provider_txn_id: the provider's own transaction id — the idempotency key.
        reference: our reference code when the provider carries it in an order field.
        amount: int VND actually paid (VNPAY's ×100 already undone).
        paid_at: aware datetime of the payment.
        memo: the raw transfer memo / order info, untouched.
        status: success, failed or pending.
        order_id: the provider's order field as sent (vnp_TxnRef, orderId, app_trans_id).
        account_number: the credited account as the provider reports it (bank pushes).
        bank_ref: the bank's own reference (FT…, MBVCB.…) when the provider gives one.
        raw: the provider's fields (secrets and signatures removed), kept for evidence.
    """

    provider: str
    provider_txn_id: str = Field(min_length=1, max_length=100)
    reference: str | None = None
    order_id: str | None = None
    amount: int
    paid_at: AwareDatetime
    status: PaymentStatus
    payer_name: str | None = None
    payer_account: str | None = None
    memo: str | None = None
    account_number: str | None = None
    raw: dict[str, object] = Field(default_factory=dict)
    bank_ref: str | None = None


class StatementLine(_Frozen):
    """One line of a bank statement, as parsed (before storage)."""

    line_no: int = Field(description="row or line number in the source file (1-based)")
    posting_date: date
    value_at: AwareDatetime | None = None
    amount: int = Field(ge=0, description="absolute amount in VND; sign is `direction`")
    direction: Direction
    bank_ref: str | None = None
    memo: str = ""
    counterparty_name: str | None = None
    counterparty_account: str | None = None


class Statement(_Frozen):
    """A parsed statement file: one account, one period, its lines."""

    source: str
    format: str
    account_number: str | None = None
    currency: str = "VND"
    period_start: date | None = None
    period_end: date | None = None
    opening_balance: int | None = None
    closing_balance: int | None = None
    lines: tuple[StatementLine, ...] = ()
    bank_bin: str | None = Field(default=None, description="bank of the export, when known")


class SettlementTxn(_Frozen):
    """One gateway transaction in a settlement file."""

    line_no: int
    provider_txn_id: str
    reference: str | None = None
    gross: int
    fee: int
    net: int
    paid_at: AwareDatetime | None = None
    batch_id: str
    kind: str = Field(default="payment", pattern="^(payment|refund)$",
                      description="refunds carry negative gross/fee/net; net = gross - fee")


class SettlementBatch(_Frozen):
    """A gateway settlement batch: one bank credit, many transactions."""

    batch_id: str
    provider: str
    settled_on: date
    net_total: int
    transactions: tuple[SettlementTxn, ...] = ()
    account_number: str | None = Field(default=None, description="bank account credited")


class SettlementFile(_Frozen):
    """A parsed gateway settlement file: batches, each paying out its transactions."""

    source: str
    format: str
    batches: tuple[SettlementBatch, ...] = ()
    account_number: str | None = Field(default=None, description="account credited, if stated")


# --- callbacks: raw requests, channels, recorded payments ----------------------------------


class RawRequest(_Frozen):
    """An HTTP request exactly as received, before anything trusts it.

    Attributes:
        method: ``GET`` or ``POST``.
        path: the request path (``/callbacks/vnpay/main``).
        query_string: the raw query string, undecoded (VNPAY signs its fields).
        headers: the headers that matter, names lower-cased.
        body: the raw body bytes (signatures are computed over these, never re-serialised).
        remote_addr: the peer address as the server saw it.
        received_at: when the server received it (aware, UTC).
    """

    method: str
    path: str
    query_string: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""
    remote_addr: str | None = None
    received_at: AwareDatetime

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class InboxState(StrEnum):
    RECEIVED = "received"    # committed, not yet processed (replay picks these up)
    PROCESSED = "processed"  # verified, parsed and recorded as a payment event
    IGNORED = "ignored"      # verified, but carries no payment (e.g. an outgoing transfer)
    REJECTED = "rejected"    # failed verification or could not be read; nothing else changed


class InboxItem(_Frozen):
    """A stored raw callback (the inbox row) with what became of it."""

    id: int
    adapter: str
    channel: str
    channel_id: int | None = None
    request: RawRequest
    state: InboxState
    reason: str | None = None
    attempts: int = 0
    processed_at: AwareDatetime | None = None
    event_id: int | None = None
    body_size: int = 0  # as received: an oversize request is kept without its body


class ChannelSecret(_Frozen):
    """What may be shown of a stored secret: never its value, only a short fingerprint."""

    id: int
    name: str
    fingerprint: str
    active: bool
    created_at: AwareDatetime
    retired_at: AwareDatetime | None = None


class Channel(_Frozen):
    """One adapter bound to one collection account (or gateway merchant) with its secrets.

    The callback URL is ``/callbacks/<adapter>/<name>``.
    """

    id: int
    name: str
    adapter: str
    account_id: int | None = None
    merchant_id: str | None = None
    settings: dict[str, object] = Field(default_factory=dict)
    active: bool = True
    created_at: AwareDatetime
    secrets: tuple[ChannelSecret, ...] = ()


class Credentials(_Frozen):
    """Everything an adapter needs to verify a callback of one channel.

    ``secrets`` maps a secret name (``hash_secret``, ``key2``…) to every value currently
    accepted — more than one while a secret is being rotated.
    """

    channel: str
    merchant_id: str | None = None
    settings: dict[str, object] = Field(default_factory=dict)
    secrets: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def values(self, name: str) -> tuple[str, ...]:
        return self.secrets.get(name, ())


class PaymentFlag(StrEnum):
    """Why a recorded payment needs a look from reconciliation. Money is never dropped."""

    UNKNOWN_REFERENCE = "unknown_reference"      # no reference found, or not ours
    AMBIGUOUS_REFERENCE = "ambiguous_reference"  # several references in one memo
    AMOUNT_MISMATCH = "amount_mismatch"          # not the amount outstanding
    DUPLICATE_PAYMENT = "duplicate_payment"      # the reference was already paid
    PAID_AFTER_EXPIRY = "paid_after_expiry"      # paid after the reference expired
    REFERENCE_CANCELLED = "reference_cancelled"  # the reference had been cancelled
    ACCOUNT_MISMATCH = "account_mismatch"        # arrived on another account than the reference's


class RecordResult(_Frozen):
    """What recording one payment event did (adapters turn it into the provider's reply).

    Attributes:
        event_id: the stored payment event (the earlier one when ``duplicate``).
        duplicate: this delivery was already recorded (same adapter, transaction, status).
        reference: the reference code the event was linked to, if any.
        reference_found: the reference exists in our database.
        state_before / state_after: the reference's state around this event.
        expected_amount: what the reference still expected before this event.
        applied: the amount was added to the reference's ``amount_paid``.
        flags: reasons for reconciliation to look at this event.
    """

    event_id: int
    duplicate: bool = False
    status: PaymentStatus
    amount: int
    reference: str | None = None
    reference_found: bool = False
    state_before: ReferenceState | None = None
    state_after: ReferenceState | None = None
    expected_amount: int | None = None
    applied: bool = False
    flags: tuple[PaymentFlag, ...] = ()

    @property
    def already_final(self) -> bool:
        """The reference was no longer waiting for money when this event arrived."""
        return self.state_before is not None and self.state_before not in (
            ReferenceState.ISSUED, ReferenceState.PARTIALLY_PAID)


class RecordedPayment(_Frozen):
    """A stored payment event (the ``payment_events`` row) as services hand it out."""

    id: int
    adapter: str
    channel_id: int | None
    account_id: int | None
    provider_txn_id: str
    status: PaymentStatus
    reference_id: int | None
    reference_code: str | None
    order_id: str | None
    amount: int
    paid_at: AwareDatetime
    memo: str | None
    payer_name: str | None
    payer_account: str | None
    bank_ref: str | None
    flags: tuple[PaymentFlag, ...]
    applied: bool
    received_at: AwareDatetime
    inbox_id: int | None
