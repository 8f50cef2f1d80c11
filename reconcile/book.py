"""The engine's working state for one account-day: what is still to be placed, and what
has been decided so far.

Every unit of money to place is a :class:`Payment`: a statement line of the day, an
earlier day's line still carried as a part-payment, or one gateway transaction inside a
batch credit (rule *gateway* splits the batch line into its transactions). Rules take
open payments and either **allocate** them to references (a :class:`Match`) or **hold**
them in a :class:`Mismatch`; a payment's money always ends up in exactly one of the two,
which is what makes the daily sum check hold by construction.

The book never looks at a clock or a database; all it knows comes from the
:class:`~reconcile.models.DayInput`. It is built to hold a million lines: payments point
at their line instead of copying it, per-reference state lives in one small object per
touched reference, and indexes only some rules need are built on first use.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from feepay import reference as codes
from feepay.money import VN_TZ
from reconcile.days import business_day, local_date
from reconcile.models import (
    Allocation,
    BatchTxn,
    Carried,
    Category,
    DayInput,
    DayResult,
    Expected,
    Match,
    Mismatch,
    ReferenceUpdate,
    Reported,
    Rule,
    Settled,
    builder,
)
from reconcile.nearmiss import corrections


class EngineError(AssertionError):
    """The engine broke one of its own invariants (a bug, never bad input)."""


class Payment:
    """Money waiting to be placed. Mutable, internal to the engine.

    Attributes:
        line: the statement line the money is on (a batch credit for a transaction).
        money: statement money it carries (a transaction's *net*).
        cover: how much of a reference it pays (a transaction's *gross*; else = money).
        codes: known reference codes found for it (memo, order field, callback).
        unknown: valid codes found that no reference has.
        near: code-shaped strings whose check fails (typos).
        event: the callback paired with it, once there is one.
        txn: the gateway transaction it is, if it is one.
        carried_key: the open ``underpaid`` mismatch an earlier day left for it.
    """

    __slots__ = ("line", "money", "cover", "at", "codes", "unknown", "near", "event", "txn",
                 "batch_id", "carried_key", "is_open", "today", "via_callback")

    def __init__(self, line: Settled, today: bool) -> None:
        self.line = line
        self.money = self.cover = line.amount
        self.at = line.value_at
        self.codes: tuple[str, ...] = ()
        self.unknown: tuple[str, ...] = ()
        self.near: tuple[str, ...] = ()
        self.event: Reported | None = None
        self.txn: BatchTxn | None = None
        self.batch_id: str | None = None
        self.carried_key: str | None = None
        self.is_open = True
        self.today = today
        self.via_callback = False

    line_id = property(lambda self: self.line.id)
    line_day = property(lambda self: self.line.posting_date)
    memo = property(lambda self: self.line.memo)
    event_id = property(lambda self: self.event.id if self.event is not None else None)
    txn_id = property(lambda self: self.txn.provider_txn_id if self.txn is not None else None)

    @property
    def bank_ref(self) -> str | None:
        return self.line.bank_ref if self.txn is None else None

    @property
    def tag(self) -> str:
        """Stable subject id: ``L<line id>`` or ``B<batch>:T<txn id>``."""
        if self.txn is not None:
            return f"B{self.batch_id}:T{self.txn.provider_txn_id}"
        return f"L{self.line.id}"

    @property
    def code(self) -> str | None:
        """The one known code, when exactly one was found."""
        return self.codes[0] if len(self.codes) == 1 else None

    def part(self, batch_id: str, txn: BatchTxn, at: datetime | None) -> Payment:
        """A gateway transaction inside this batch credit line."""
        q = Payment(self.line, today=self.today)
        q.money, q.cover, q.at = txn.net, txn.gross, at
        q.txn, q.batch_id = txn, batch_id
        return q


def payment_order(p: Payment) -> tuple:
    """Canonical order of payments (lines by day, time, id; then transactions)."""
    at = p.at
    return (p.line.posting_date, at is None, at.timestamp() if at else 0.0, p.line.id,
            p.txn.provider_txn_id if p.txn is not None else "")


class RefState:
    """What one reference still owes, and what today did to it."""

    __slots__ = ("remaining", "allocated", "paid_at")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.allocated = 0
        self.paid_at: datetime | None = None


class Book:
    """Open payments, free callbacks, per-reference balances, and the decisions so far."""

    def __init__(self, inp: DayInput) -> None:
        self.inp = inp
        self.day = inp.day
        self.policy = inp.policy
        self.account_id = inp.account_id
        self.refs: dict[str, Expected] = {r.code: r for r in inp.references}
        self.prior = {p.code: p for p in inp.prior}
        self.state: dict[str, RefState] = {}
        self.partial: set[str] = set()
        self.matches: list[Match] = []
        self.mismatches: list[Mismatch] = []
        self.clears: set[str] = set()
        self.pending_events: list[int] = []
        self.events = sorted(inp.events, key=lambda e: (e.paid_at, e.id))
        self.free: set[int] = {e.id for e in self.events}
        # a code with one callback maps to it, several to a list: no list per callback
        self._by_ref: dict[str, Reported | list[Reported]] = {}
        by_ref = self._by_ref
        for e in self.events:
            code = e.reference
            if code:
                have = by_ref.get(code)
                if have is None:
                    by_ref[code] = e
                elif type(have) is list:
                    have.append(e)
                else:
                    by_ref[code] = [have, e]
        self._indexes: dict[str, dict] = {}
        self.payments: list[Payment] = []
        self._groups: dict[str, Payment | list[Payment]] = {}
        self._by_line: dict[int, Payment] | None = None
        self._inserts = 0  # payments added to groups; see open_groups
        self._open_codes: list[str] | None = None
        self._doubtful: set[int] = set()  # id() of payments a gatekeeper may hold
        self._codeless: set[int] = set()  # id() of today's lines naming no known code
        self._load_lines(inp)

    # -- loading -----------------------------------------------------------------------
    def _load_lines(self, inp: DayInput) -> None:
        for c in sorted(inp.carried, key=_carried_order):
            p = Payment(c.line, today=False)
            if c.txn is not None:  # a gateway transaction's part, not its batch's credit
                p = p.part(c.batch_id or "", c.txn, c.txn.paid_at or c.line.value_at)
            p.codes = (c.code,)
            p.carried_key = c.key
            if c.event_id is not None:  # paired on its own day; the callback is not input
                p.event = Reported(c.event_id, "", "", p.money,
                                   p.at or _noon(c.line.posting_date), c.code)
                self.free.discard(c.event_id)
            self._doubtful.add(id(p))
            self._add(p)
        find, near, refs = codes.find_in_text, codes.near_misses, self.refs
        doubtful, account = self._doubtful, self.account_id
        for line in sorted(inp.lines, key=_line_order):
            p = Payment(line, today=True)
            found = line.codes if line.codes is not None else (
                find(line.memo) if line.memo else ())
            if len(found) == 1:  # the common case, without the two generators below
                ref = refs.get(found[0])
                if ref is None:
                    p.unknown = found
                else:
                    p.codes = found
                    at = line.value_at
                    # what wrong_account and expired_or_cancelled will ask, while the
                    # reference is at hand (a line's own time never changes)
                    if (ref.account_id != account or ref.state == "cancelled" or at is None
                            or at > ref.expires_at):
                        doubtful.add(id(p))
            elif found:
                known = tuple(c for c in found if c in refs)
                p.codes = found if len(known) == len(found) else known
                if len(known) != len(found):
                    p.unknown = tuple(c for c in found if c not in refs)
                doubtful.add(id(p))
            if not p.codes:
                self._codeless.add(id(p))
                if line.memo:
                    p.near = tuple(near(line.memo))
            self._add(p)

    def _add(self, p: Payment) -> None:
        self.payments.append(p)
        if len(p.codes) == 1:
            self._insert(p.codes[0], p)

    def _insert(self, code: str, p: Payment, keep_order: bool = False) -> None:
        self._inserts += 1
        self._open_codes = None
        group = self._groups.get(code)
        if group is None:
            self._groups[code] = p
        elif isinstance(group, list):
            group.append(p)
            if keep_order:
                group.sort(key=payment_order)
        else:
            self._groups[code] = [group, p]
            if keep_order:
                self._groups[code].sort(key=payment_order)

    def add_payment(self, p: Payment) -> None:
        """Register a payment a rule created (a gateway transaction)."""
        self._doubtful.add(id(p))
        self.payments.append(p)
        if len(p.codes) == 1:
            self._insert(p.codes[0], p, keep_order=True)

    def attribute(self, p: Payment, code: str) -> None:
        """Give a code-less payment the code a callback told us (rule *callback*)."""
        p.codes = (code,)
        p.via_callback = True
        self._doubtful.add(id(p))
        self._insert(code, p, keep_order=True)

    # -- questions ---------------------------------------------------------------------
    def groups(self) -> Iterator[tuple[str, list[Payment]]]:
        """(code, its single-code payments in canonical order), for every code."""
        for code, group in self._groups.items():
            yield code, group if isinstance(group, list) else [group]

    def raw_groups(self) -> Iterator[tuple[str, Payment | list[Payment]]]:
        """Like :meth:`groups`, but a code named by one payment yields that payment itself.

        A complete walk that inserts nothing leaves :meth:`open_groups` the codes still
        open at its end, so the next rules' walks need not visit every group again."""
        groups, inserts = self._groups, self._inserts
        survivors = []
        for code, group in groups.items():
            yield code, group
            if (group.is_open if type(group) is Payment
                    else any(p.is_open for p in group)):  # type: ignore[union-attr]
                survivors.append(code)
        if self._inserts == inserts:
            self._open_codes = survivors

    def open_groups(self) -> Iterator[tuple[str, list[Payment]]]:
        """(code, its open single-code payments) for every code that has any.

        A payment never reopens, so a walk only needs the codes the previous complete walk
        found open (four rules walk after *exact* has closed nearly all), unless a payment
        was inserted since. Same codes, same order as walking every group.
        """
        groups, inserts = self._groups, self._inserts
        codes = self._open_codes if self._open_codes is not None else list(groups)
        survivors = []
        for code in codes:
            group = groups[code]
            if isinstance(group, Payment):
                if group.is_open:
                    survivors.append(code)
                    yield code, [group]
            else:
                waiting = [p for p in group if p.is_open]
                if waiting:
                    survivors.append(code)
                    yield code, waiting
        if self._inserts == inserts:
            self._open_codes = survivors

    def group(self, code: str) -> list[Payment]:
        group = self._groups.get(code)
        return [] if group is None else group if isinstance(group, list) else [group]

    def line(self, line_id: int) -> Payment | None:
        """The payment of a statement line (not a gateway transaction)."""
        if self._by_line is None:
            self._by_line = {p.line.id: p for p in self.payments if p.txn is None}
        return self._by_line.get(line_id)

    def open_payments(self, *, today_only: bool = False) -> list[Payment]:
        return [p for p in self.payments if p.is_open and (p.today or not today_only)]

    def doubtful(self) -> list[Payment]:
        """Open payments naming one code that is another account's, cancelled, or that
        their time may put past its expiry — all that the gatekeeper rules could hold
        (decided when each payment got its code), in canonical order. Walks the list of
        payments without touching the others: a million-line day's values stay cold."""
        ids = self._doubtful
        return [p for p in self.payments if id(p) in ids and p.is_open]

    def codeless(self) -> list[Payment]:
        """Today's open statement lines that name no known code (rules *gateway* and
        *callback*), in canonical order; like :meth:`doubtful`, without touching the
        others."""
        ids = self._codeless
        return [p for p in self.payments if id(p) in ids and p.is_open and not p.codes]

    def ref_state(self, code: str) -> RefState:
        st = self.state.get(code)
        if st is None:
            prior = self.prior.get(code)
            st = self.state[code] = RefState(
                self.refs[code].amount_due - (prior.allocated if prior else 0))
        return st

    def remaining(self, code: str) -> int:
        """What ``code`` still owes: due − earlier days' matches − today's matches."""
        st = self.state.get(code)
        return st.remaining if st is not None else self.ref_state(code).remaining

    def on_account(self, code: str) -> bool:
        return self.refs[code].account_id == self.account_id

    def payable(self, code: str, p: Payment) -> bool:
        """Could ``code`` still be paid when ``p`` was paid?

        Never once cancelled (money for a withdrawn dossier needs a person, whenever it
        was sent). Not after ``expires_at``. Without a time on the line, a posting up to
        the day after the local expiry day is accepted: a 22:30 transfer on the last day
        is posted by the bank the next morning.
        """
        ref = self.refs[code]
        if ref.state == "cancelled":
            return False
        at = self.time_of(p, code)
        if at is not None:
            return at <= ref.expires_at
        return p.line.posting_date <= local_date(ref.expires_at) + timedelta(days=1)

    def callbacks_for(self, code: str) -> list[Reported] | tuple[Reported, ...]:
        """The callbacks naming ``code``, in time order."""
        found = self._by_ref.get(code)
        return () if found is None else found if type(found) is list else (found,)

    def time_of(self, p: Payment, code: str) -> datetime | None:
        """When ``p`` was paid: its callback's time, its own, or a likely callback's."""
        if p.event is not None:
            return p.event.paid_at
        if p.at is not None:
            return p.at
        for e in self.callbacks_for(code):
            if e.id in self.free and e.amount == p.cover:
                return e.paid_at
        return None

    def business_day(self, moment: datetime) -> date:
        return business_day(moment, self.policy.cutoff)

    def suggestions(self, p: Payment) -> tuple[str, ...]:
        """Known references a near-miss code in ``p`` could be (never applied)."""
        out: list[str] = []
        for miss in p.near:
            for code in corrections(miss):
                if code in self.refs and code not in out:
                    out.append(code)
        return tuple(out)

    def index(self, name: str) -> dict:
        """Indexes of callbacks some rules need, built on first use:
        ``bank_ref`` → [events] for the bank refs of today's code-less lines (rule
        *callback*), ``txn`` → (provider, txn id) → event for the transactions of the
        batches (rule *gateway*), ``amount`` → ([times], [events of references no payment
        names]) in time order. Only what a rule can ask for goes in: a million-line
        day's callbacks are looked at once, not stored again."""
        idx = self._indexes.get(name)
        if idx is None:
            idx = self._indexes[name] = {}
            if name == "bank_ref":
                wanted = {p.line.bank_ref for p in self.codeless() if p.line.bank_ref}
            elif name == "txn":
                wanted = {t.provider_txn_id for b in self.inp.batches for t in b.txns}
            for e in self.events:  # already in time order
                if name == "bank_ref":
                    if e.bank_ref in wanted:
                        idx.setdefault(e.bank_ref, []).append(e)
                elif (name == "amount" and e.reference in self.refs
                      and e.reference not in self._groups):
                    # only callbacks whose reference has no payment naming it: those are
                    # the ones a code-less line could be (keeps the candidates few)
                    times, evs = idx.setdefault(e.amount, ([], []))
                    times.append(e.paid_at.timestamp())
                    evs.append(e)
                elif name == "txn" and e.provider_txn_id in wanted:
                    idx.setdefault((e.provider, e.provider_txn_id), e)
        return idx

    def events_near(self, amount: int, at: datetime, seconds: float) -> list[Reported]:
        """Callbacks (with a reference) of exactly ``amount`` within ``seconds`` of ``at``."""
        found = self.index("amount").get(amount)
        if not found:
            return []
        times, evs = found
        t = at.timestamp()
        return evs[bisect_left(times, t - seconds):bisect_right(times, t + seconds)]

    # -- callbacks ---------------------------------------------------------------------
    def claim(self, event: Reported) -> Reported:
        self.free.remove(event.id)
        return event

    def take_event(self, code: str, p: Payment) -> Reported | None:
        """Pair ``p`` with a free callback for ``code``: same bank ref, then same amount,
        then the earliest. A payment that arrived with its callback keeps it (a payment
        naming several codes gets one callback per code)."""
        came_with = p.event
        if came_with is not None and came_with.reference in (None, code):
            return came_with
        candidates = self.callbacks_for(code)
        if not candidates:
            return None
        free = self.free
        best = None
        bank_ref = p.bank_ref
        for e in candidates:
            if e.id in free:
                if bank_ref and e.bank_ref == bank_ref:
                    best = e
                    break
                if best is None or (e.amount == p.cover and best.amount != p.cover):
                    best = e
        if best is None:
            return None
        free.remove(best.id)
        if came_with is None:
            p.event = best
        return best

    # -- decisions ---------------------------------------------------------------------
    def allocate_one(self, rule: Rule, p: Payment, code: str) -> Match:
        """The common case, all of one payment to one reference: :meth:`allocate` without
        its lists (a million of these make a night)."""
        event = self.take_event(code, p)
        line = p.line
        txn = p.txn
        st = self.state.get(code) or self.ref_state(code)
        st.remaining -= p.cover
        st.allocated += p.money
        # a line with no time and no callback was paid on its posting day, not the run's
        at = event.paid_at if event is not None else (p.at or _noon(line.posting_date))
        if st.paid_at is None or at < st.paid_at:
            st.paid_at = at
        if p.carried_key:
            self.clears.add(p.carried_key)
        p.is_open = False
        if rule is Rule.EXACT and txn is not None:
            rule = Rule.GATEWAY
        elif rule is Rule.EXACT and p.via_callback:
            rule = Rule.CALLBACK
        match = _match(rule, (_allocation(
            line.id, line.posting_date, code, p.money, event.id if event is not None else None,
            p.batch_id, txn.provider_txn_id if txn is not None else None),))
        self.matches.append(match)
        if event is None and rule is not Rule.MANUAL and self.policy.expect_callbacks:
            prior = self.prior.get(code)
            if not (prior and prior.has_event):
                self._no_callback(code, [(p, code, p.money, p.cover)], match, several=False)
        return match

    def allocate(self, rule: Rule, parts: list[tuple[Payment, str, int, int]]) -> Match:
        """Match money to references and close every payment in ``parts``.

        Each part is ``(payment, code, money, cover)``: ``money`` of the payment's statement
        money goes to ``code`` and pays ``cover`` of what it owes (they differ only for
        gateway transactions, whose fee never reaches the account).
        """
        allocations = []
        codes_seen: list[str] = []
        with_event: set[str] = set()
        for p, code, money, cover in parts:
            event = self.take_event(code, p)
            if event is not None:
                with_event.add(code)
            line = p.line
            allocations.append(Allocation(line.id, line.posting_date, code, money,
                                          event.id if event is not None else None,
                                          p.batch_id, p.txn_id))
            st = self.ref_state(code)
            st.remaining -= cover
            st.allocated += money
            at = event.paid_at if event is not None else (
                p.at or self.time_of(p, code) or _noon(p.line.posting_date))
            if at is not None and (st.paid_at is None or at < st.paid_at):
                st.paid_at = at
            if code not in codes_seen:
                codes_seen.append(code)
            if p.carried_key:
                self.clears.add(p.carried_key)
            p.is_open = False
        first = parts[0][0]
        if rule is Rule.EXACT and first.txn is not None:
            rule = Rule.GATEWAY
        elif rule is Rule.EXACT and first.via_callback:
            rule = Rule.CALLBACK
        match = Match(rule, tuple(allocations))
        self.matches.append(match)
        if rule is not Rule.MANUAL and self.policy.expect_callbacks:
            for code in codes_seen:
                prior = self.prior.get(code)
                if code not in with_event and not (prior and prior.has_event):
                    self._no_callback(code, parts, match, several=len(codes_seen) > 1)
        return match

    def _no_callback(self, code: str, parts: list[tuple[Payment, str, int, int]],
                     match: Match, several: bool) -> None:
        p = next(q for q, c, _m, _c in parts if c == code)
        key = f"{Category.MONEY_NO_CALLBACK}:{p.tag}" + (f":{code}" if several else "")
        self.notice(Category.MONEY_NO_CALLBACK, key,
                    reference=code, expected_amount=self.refs[code].amount_due,
                    line_id=p.line_id, line_day=p.line_day, batch_id=p.batch_id,
                    match=match.key, amount_matched=match.amount)

    def hold(self, category: Category, p: Payment, amount: int | None = None, *,
             reference: str | None = None, expected_amount: int | None = None,
             suggested: tuple[str, ...] = (), key_suffix: str = "",
             **evidence: object) -> Mismatch:
        """Put ``p``'s money (or ``amount`` of it) in a mismatch. Closes ``p``.

        ``key_suffix`` sets a held part apart from another mismatch of the same payment
        (what a person's link could not place: never the key of the row they resolved)."""
        event = self.take_event(reference, p) if reference else p.event
        base: dict[str, object] = {}
        if p.memo:
            base["memo"] = p.memo
        if p.bank_ref:
            base["bank_ref"] = p.bank_ref
        if p.txn is not None:  # what a later day needs to carry the part on its own
            base["txn_id"] = p.txn.provider_txn_id
            base.update(gross=p.txn.gross, fee=p.txn.fee)
        if p.unknown:
            base["unknown_codes"] = list(p.unknown)
        if p.near:
            base["near_misses"] = list(p.near)
        mm = Mismatch(category, f"{category}:{p.tag}{key_suffix}",
                      p.money if amount is None else amount,
                      p.line_id, p.line_day, reference, expected_amount,
                      event.id if event is not None else None, p.batch_id, suggested,
                      {**base, **evidence})
        self.mismatches.append(mm)
        if p.carried_key and p.carried_key != mm.key:
            self.clears.add(p.carried_key)
        p.is_open = False
        return mm

    def notice(self, category: Category, key: str, *, reference: str | None = None,
               expected_amount: int | None = None, event_id: int | None = None,
               line_id: int | None = None, line_day: date | None = None,
               batch_id: str | None = None, **evidence: object) -> Mismatch:
        """A mismatch holding no money (a missing credit, a missing callback)."""
        mm = Mismatch(category, key, 0, line_id, line_day, reference, expected_amount,
                      event_id, batch_id, (), evidence)
        self.mismatches.append(mm)
        return mm

    # -- result ------------------------------------------------------------------------
    def result(self) -> DayResult:
        day = self.day
        credits = sum(line.amount for line in self.inp.lines)
        matched = sum(a.amount for m in self.matches for a in m.allocations
                      if a.line_day == day)
        held = sum(m.amount for m in self.mismatches if m.line_day == day)
        if credits != matched + held:
            raise EngineError(f"money not conserved: credits {credits} != matched {matched} "
                              f"+ held {held}")
        for p in self.payments:
            if p.today and p.is_open:
                raise EngineError(f"payment {p.tag} left unplaced")
        keys = {m.key for m in self.mismatches}
        if len(keys) != len(self.mismatches):
            raise EngineError("two mismatches share a key")
        # matches are already in canonical order (rules walk canonically ordered payments)
        self.mismatches.sort(key=lambda m: m.key)
        return DayResult(
            account_id=self.account_id, day=day, matches=tuple(self.matches),
            mismatches=tuple(self.mismatches), updates=self._updates(),
            clears=tuple(sorted(self.clears)),
            pending_events=tuple(sorted(self.pending_events)),
            credits=credits, matched=matched, held=held)

    def _updates(self) -> tuple[ReferenceUpdate, ...]:
        out = []
        prior, refs, account, partial = self.prior, self.refs, self.account_id, self.partial
        update = _update
        for code, st in self.state.items():
            if not (st.allocated or code in partial) or refs[code].account_id != account:
                continue
            p = prior.get(code)
            total = st.allocated + (p.allocated if p else 0)
            state = "settled" if st.remaining <= 0 else "partially_paid"
            out.append(update(code, state, total, st.paid_at))
        return tuple(out)


# a million of each a night: built without the frozen dataclasses' slower __init__
_match, _allocation, _update = builder(Match), builder(Allocation), builder(ReferenceUpdate)


def _carried_order(c: Carried) -> tuple:
    return (c.line.posting_date, c.line.id, c.txn.provider_txn_id if c.txn else "")


def _line_order(line: Settled) -> tuple:
    at = line.value_at
    return (line.posting_date, at is None, at.timestamp() if at else 0.0, line.id)


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), VN_TZ)
