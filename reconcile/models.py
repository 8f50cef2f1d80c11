"""What the reconciliation engine reads and writes: plain, frozen values.

The three sides of one account-day, in the words of the issue:

* **expected** — :class:`Expected`, a payment reference (what a dossier owes);
* **reported** — :class:`Reported`, a payment event from a gateway or bank callback
  (someone *said* it was paid);
* **settled** — :class:`Settled`, a credit line on the bank statement, and
  :class:`Batch`, a gateway settlement batch with its transactions (the money *arrived*).

Everything is a frozen ``dataclass(slots=True)``: a night can hold a million statement
lines and a million references, and a slotted dataclass costs ~150 bytes against ~1.1 kB
for a pydantic ``BaseModel`` (measured; see docs/benchmarks/reconcile.md). Pydantic still
validates them wherever data crosses a boundary: :data:`DAY_INPUT` and :data:`DAY_RESULT`
are ``TypeAdapter``\\ s used for the golden files and JSON output. The runner builds them
straight from typed database rows.

Money is ``int`` VND; datetimes are aware; ``date`` fields are local (Asia/Ho_Chi_Minh)
business or posting days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import TypeAdapter


class Category(StrEnum):
    """Mismatch categories (chênh lệch). docs/reconcile.md says what a reviewer does for each."""

    PAID_NO_MONEY = "paid_no_money"
    MONEY_NO_CALLBACK = "money_no_callback"
    UNDERPAID = "underpaid"
    OVERPAID = "overpaid"
    DUPLICATE = "duplicate"
    UNKNOWN_REFERENCE = "unknown_reference"
    WRONG_ACCOUNT = "wrong_account"
    EXPIRED_OR_CANCELLED = "expired_or_cancelled"
    AMBIGUOUS = "ambiguous"
    BATCH_TOTAL_DIFFERS = "batch_total_differs"


#: Vietnamese labels (reports and UI), then English.
CATEGORY_LABELS: dict[Category, tuple[str, str]] = {
    Category.PAID_NO_MONEY: ("Báo đã thanh toán nhưng chưa thấy tiền",
                             "Reported paid, no money on the statement"),
    Category.MONEY_NO_CALLBACK: ("Có tiền nhưng không có thông báo thanh toán",
                                 "Money arrived without a callback"),
    Category.UNDERPAID: ("Nộp thiếu", "Underpaid"),
    Category.OVERPAID: ("Nộp thừa", "Overpaid"),
    Category.DUPLICATE: ("Nộp trùng (cần hoàn trả)", "Duplicate payment (refund due)"),
    Category.UNKNOWN_REFERENCE: ("Không xác định được mã thanh toán (treo)",
                                 "Unknown reference (suspense)"),
    Category.WRONG_ACCOUNT: ("Nộp nhầm vào tài khoản của đơn vị khác",
                             "Paid into another unit's account"),
    Category.EXPIRED_OR_CANCELLED: ("Nộp sau khi mã hết hạn hoặc đã hủy",
                                    "Paid after expiry or cancellation"),
    Category.AMBIGUOUS: ("Không xác định duy nhất (nhiều khả năng)",
                         "Ambiguous (several candidates fit)"),
    Category.BATCH_TOTAL_DIFFERS: ("Tổng lô quyết toán cổng thanh toán không khớp",
                                   "Gateway batch total differs"),
}

#: Categories that hold no money of their own (a notice or a missing credit).
NOTICE_CATEGORIES = frozenset({Category.PAID_NO_MONEY, Category.MONEY_NO_CALLBACK})


class Rule(StrEnum):
    """Names of the match rules (the ``rule`` of a :class:`Match`)."""

    MANUAL = "manual"
    EXACT = "exact"
    MULTI = "multi"
    SPLIT = "split"
    OVER = "over"
    GATEWAY = "gateway"
    CALLBACK = "callback"
    LATE_CALLBACK = "late_callback"
    REFUND = "refund"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Expected:
    """A payment reference as the engine needs it.

    Attributes:
        id: database id (used only to link results back).
        code: canonical reference code, e.g. ``FP7K3MQ9XA4C``.
        account_id: the collection account it must be paid into.
        amount_due: int VND.
        state: the reference state; only ``cancelled`` changes matching (expiry is judged
            by time, not by the state an expiry job may have set).
        expires_at: aware; a payment after it is ``expired_or_cancelled``.
        cancelled_at: aware, when cancelled.
    """

    id: int
    code: str
    account_id: int
    amount_due: int
    expires_at: datetime
    state: str = "issued"
    cancelled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """A successful payment event (callback). Failed and pending events are not input.

    Attributes:
        reference: our code when the provider carried it (order field) or the callbacks
            service found it in the memo; ``None`` when unlinked.
        bank_ref: the bank's transaction reference when the provider sends it (bank push
            callbacks); pairs the event with its statement line exactly.
    """

    id: int
    provider: str
    provider_txn_id: str
    amount: int
    paid_at: datetime
    reference: str | None = None
    bank_ref: str | None = None
    memo: str | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """A credit line on the account's bank statement (debits are not reconciled).

    ``codes`` are the valid reference codes in the memo when already known (the statement
    import stores them); ``None`` lets the engine find them itself.
    """

    id: int
    posting_date: date
    amount: int
    memo: str = ""
    value_at: datetime | None = None
    bank_ref: str | None = None
    codes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BatchTxn:
    """One gateway transaction inside a settlement batch: gross - fee = net.

    ``kind`` is ``payment`` or ``refund`` (a refund's amounts are negative).
    """

    provider_txn_id: str
    gross: int
    fee: int
    net: int
    reference: str | None = None
    paid_at: datetime | None = None
    kind: str = "payment"


@dataclass(frozen=True, slots=True)
class Batch:
    """A gateway settlement batch: one bank credit of ``net_total`` for its transactions."""

    batch_id: str
    provider: str
    settled_on: date
    net_total: int
    txns: tuple[BatchTxn, ...] = ()


@dataclass(frozen=True, slots=True)
class Carried:
    """An earlier day's line still held as ``underpaid`` for ``code`` (open or carried over).

    A later part-payment may complete the reference (rule *split*); its money was already
    counted in its own day's sum check, so it never counts in this day's. A part that was
    a gateway transaction names it (``batch_id``, ``txn``): ``line`` is then the batch's
    credit, and the part carries the transaction's net and covers its gross.
    """

    line: Settled
    code: str
    key: str
    event_id: int | None = None
    batch_id: str | None = None
    txn: BatchTxn | None = None


@dataclass(frozen=True, slots=True)
class Prior:
    """What earlier days already matched to a reference.

    Attributes:
        allocated: money matched to it on days before this one.
        has_event: whether any of those matches carried a callback.
        notices: keys of still-open ``money_no_callback`` notices for it, which a late
            callback clears.
    """

    code: str
    allocated: int
    has_event: bool = False
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ManualLink:
    """A reviewer's decision (resolution *link*): this statement line pays this reference
    (``code``), or this line is the credit of this gateway settlement batch (``batch``)."""

    line_id: int
    code: str | None = None
    batch: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-account knobs.

    Attributes:
        cutoff: local time after which a payment belongs to the next business day
            (``None`` = midnight).
        grace_days: days a callback may wait for its money before ``paid_no_money``.
        lookback_days: how far back reported payments and part-payments are considered.
        time_tolerance_s: how close a code-less line's time must be to a callback's
            for rule *callback* to pair them by amount and time.
        batch_lag_days: how many days after a batch's settlement day its credit may post.
        expect_callbacks: raise ``money_no_callback`` when money arrives with no callback.
            The runner turns it off for an account no callback channel serves: there every
            transfer is learned from the statement, and a notice per payment would be noise.
    """

    cutoff: time | None = None
    grace_days: int = 2
    lookback_days: int = 7
    time_tolerance_s: int = 900
    batch_lag_days: int = 3
    expect_callbacks: bool = True


@dataclass(frozen=True, slots=True)
class DayInput:
    """Everything the engine sees for one account and one business day.

    ``lines`` are the account's credit lines posted on ``day`` (this run owns their money).
    ``events`` are successful callbacks of the look-back window not yet claimed by an
    earlier day; ``batches`` likewise. ``references`` are every reference named by the
    inputs (any account — that is how *wrong account* is seen) plus those a near-miss
    could mean. ``prior`` and ``carried`` summarise earlier days; ``links`` are human
    decisions, applied first.
    """

    account_id: int
    day: date
    lines: tuple[Settled, ...] = ()
    events: tuple[Reported, ...] = ()
    batches: tuple[Batch, ...] = ()
    references: tuple[Expected, ...] = ()
    prior: tuple[Prior, ...] = ()
    carried: tuple[Carried, ...] = ()
    links: tuple[ManualLink, ...] = ()
    policy: Policy = field(default_factory=Policy)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Allocation:
    """Money from one statement line (or one gateway transaction in it) to one reference.

    ``line_id`` is ``None`` only for a late callback, which moves no money.
    """

    line_id: int | None
    line_day: date | None
    code: str | None
    amount: int
    event_id: int | None = None
    batch_id: str | None = None
    txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A set of allocations the engine is sure of, with the rule that found them."""

    rule: Rule
    allocations: tuple[Allocation, ...]

    @property
    def key(self) -> str:
        """Stable identity: the rule and the first subject (``L<line>``, ``B<batch>:T<txn>``
        or ``E<event>``); a subject is in at most one match."""
        return f"{self.rule}:{subject_of(self.allocations[0])}"

    @property
    def amount(self) -> int:
        return sum(a.amount for a in self.allocations)


def subject_of(a: Allocation) -> str:
    """The subject tag of an allocation (what the money came from)."""
    if a.txn_id is not None:
        return f"B{a.batch_id}:T{a.txn_id}"
    if a.line_id is not None:
        return f"L{a.line_id}"
    return f"E{a.event_id}"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Something a person must look at, with its evidence.

    Attributes:
        key: stable identity (``category:subject``) — re-running a day reproduces it, so a
            stored resolution stays attached.
        amount: statement money this mismatch holds (0 for notices).
        expected_amount: what the other side says (due, callback amount, batch total).
        reference: the reference concerned, when one is known.
        suggested: likely references (near-miss codes, ambiguous candidates); never applied.
        evidence: JSON-able details for the reviewer.
    """

    category: Category
    key: str
    amount: int = 0
    line_id: int | None = None
    line_day: date | None = None
    reference: str | None = None
    expected_amount: int | None = None
    event_id: int | None = None
    batch_id: str | None = None
    suggested: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True, slots=True)
class ReferenceUpdate:
    """A state a reference should move to (the runner applies it with a guarded UPDATE)."""

    code: str
    state: str  # "settled" | "partially_paid" (moving back is the writer's: reconcile.persist)
    allocated: int
    paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DayResult:
    """The engine's answer for one account-day.

    ``credits == matched + held`` always holds (money conservation); the engine refuses to
    return otherwise. ``clears`` are keys of earlier mismatches this day resolved (a
    part-payment completed, a late callback arrived); :meth:`claimed_events` says which
    callbacks got their money (resolving any earlier ``paid_no_money``).
    ``pending_events`` are callbacks still inside their grace period.
    """

    account_id: int
    day: date
    matches: tuple[Match, ...]
    mismatches: tuple[Mismatch, ...]
    updates: tuple[ReferenceUpdate, ...]
    clears: tuple[str, ...]
    pending_events: tuple[int, ...]
    credits: int
    matched: int
    held: int

    @property
    def balanced(self) -> bool:
        return self.credits == self.matched + self.held

    def claimed_events(self) -> set[int]:
        """Callbacks this day paired with money (a match, or a line held in a mismatch):
        an earlier ``paid_no_money`` for any of them is resolved."""
        out = {a.event_id for m in self.matches for a in m.allocations
               if a.event_id is not None}
        out.update(m.event_id for m in self.mismatches
                   if m.event_id is not None and m.category not in NOTICE_CATEGORIES)
        return out


V = TypeVar("V")


def builder(cls: type[V]) -> Callable[..., V]:
    """A positional constructor for one of the frozen, slotted value classes above, taking
    every field in order.

    Why: a frozen dataclass's generated ``__init__`` sets each field through
    ``object.__setattr__``, half the cost of building a value; this sets the slots
    directly (0.4 µs instead of 0.75 µs for seven fields). The objects are the same —
    same class, equal to and hashing like ones built the ordinary way. For the loader and
    the engine, which build a million of them from values already of the right type.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope.update({f"set{i}": getattr(cls, n).__set__ for i, n in enumerate(names)})
    args = ", ".join(f"v{i}" for i in range(len(names)))
    body = "".join(f"    set{i}(o, v{i})\n" for i in range(len(names)))
    exec(f"def build({args}):\n    o = new(cls)\n{body}    return o\n", scope)  # noqa: S102
    return scope["build"]


DAY_INPUT: TypeAdapter[DayInput] = TypeAdapter(DayInput)
DAY_RESULT: TypeAdapter[DayResult] = TypeAdapter(DayResult)
