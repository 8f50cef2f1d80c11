"""The matching rules, in the order the engine applies them.

Each rule is a small function ``rule(book) -> None`` that looks at what is still open in
the :class:`~reconcile.book.Book` and either matches it (money → references) or holds it
in a mismatch. Rules never guess: when two candidates fit equally the money is held as
*ambiguous*, and a near-miss code is only ever a suggestion.

Order matters and is part of the contract (docs/reconcile.md walks through an example):

=====================  ==================================================================
``manual_links``       a reviewer linked this line to that reference: done first;
                       it pays what the reference owes, the rest is held
``gateway``            a batch credit = Σ net of its transactions; split it into them
``callback``           a code-less line paired with a callback (bank ref; amount + time)
``wrong_account``      the code belongs to another collection account
``expired_or_cancelled``  the reference could no longer be paid then
``exact``              one payment, one code, amount = what is still due
``multi``              one payment naming several codes, amount = their sum
``split``              several payments for one code summing to what is due (look-back)
``over``               payments exceed what is due: match what is due, hold the excess
``duplicate``          money for a reference already paid in full
``underpaid``          less than due (held; a later part-payment may complete it)
``ambiguous``          several codes that do not add up
``unknown``            no usable code: suspense, with near-miss suggestions
``late_callbacks``     a callback for money matched on an earlier day
``missing_money``      a callback with no money after the grace period
=====================  ==================================================================
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from feepay.reference import is_valid, normalize_memo
from reconcile.book import Book, Payment
from reconcile.models import Allocation, Batch, BatchTxn, Category, Match, Rule

MIN_BATCH_ID = 6  # shorter batch ids are too likely to appear in a memo by chance


def manual_links(book: Book) -> None:
    """Rule 0: a person's ``link`` decision, applied before any rule guesses.

    A link says *which* reference a line pays, not *how much* it pays: the reference takes
    at most what it still owes and the rest stays held for review, as rule ``over`` holds
    an excess. Without this, a 150.000 ₫ line linked to a reference owing 6.000 ₫ would
    settle it and the 144.000 ₫ excess would vanish from review.
    """
    for link in sorted(book.inp.links, key=lambda x: (x.line_id, x.code or "")):
        p = book.line(link.line_id)
        if link.code and p is not None and p.is_open and link.code in book.refs:
            _apply_link(book, p, link.code)


def _apply_link(book: Book, p: Payment, code: str) -> None:
    """Pay ``code`` what it still owes from ``p``; hold whatever the link cannot place.

    Another collection account's reference is not paid here (the money would count as
    matched on the wrong account): ``wrong_account``. A reference that owes nothing more
    gets nothing: ``duplicate``. An excess over what it owes: ``overpaid``.
    """
    if not book.on_account(code):
        _hold_linked(book, Category.WRONG_ACCOUNT, p, code, p.money,
                     reference_account=book.refs[code].account_id,
                     why="linked to another collection account's reference")
        return
    owed = book.remaining(code)
    if owed <= 0:
        prior = book.prior.get(code)
        _hold_linked(book, Category.DUPLICATE, p, code, p.money,
                     paid_earlier=prior.allocated if prior else 0,
                     paid_today=book.ref_state(code).allocated,
                     why="linked to a reference that owes nothing more")
        return
    paid = min(p.money, owed)
    match = book.allocate(Rule.MANUAL, [(p, code, paid, paid)])
    if paid < p.money:
        _hold_linked(book, Category.OVERPAID, p, code, p.money - paid, match=match.key,
                     paid=paid, why="linked to a reference that owed less than the line")


def _hold_linked(book: Book, category: Category, p: Payment, code: str, amount: int,
                 **evidence: object) -> None:
    """Hold ``amount`` of a linked line, saying it came through a person's link.

    Its key is ``category:L<line>:<code>``: never the key of the mismatch the link
    resolved (a ``duplicate`` linked to a reference already paid would otherwise be held
    again under that resolved row, out of every reviewer's sight).
    """
    book.hold(category, p, amount, reference=code, expected_amount=book.refs[code].amount_due,
              key_suffix=f":{code}", via="link", linked_reference=code, **evidence)


# --------------------------------------------------------------------------- gateway


def gateway(book: Book) -> None:
    """Rule 4 (three-way): a gateway's batch credit on the statement.

    The credit line is found by the batch id in its memo (or, failing that, by amount =
    batch total and the provider's name in the memo, within ``batch_lag_days``). A batch
    that two lines fit, or a line that two batches fit, is *ambiguous*. When the credit,
    the batch total and the sum of the transactions' net amounts agree, the line is split
    into one payment per transaction, carrying its callback (same provider transaction id)
    and its reference; the reference rules below then place each one. When they do not
    agree the whole credit is held as ``batch_total_differs``. A line a person linked to a
    batch (resolving such an ambiguity) is that batch's credit, and no other batch's.
    """
    lag = timedelta(days=book.policy.batch_lag_days)
    batches = [b for b in sorted(book.inp.batches, key=lambda b: (b.settled_on, b.batch_id))
               if b.settled_on <= book.day <= b.settled_on + lag]
    if not batches:
        return
    lines = book.codeless()
    memos = {id(p): normalize_memo(p.memo) for p in lines}
    chosen, linked = _linked_batches(book, batches, lines)
    strong = set(linked)
    for b in batches:
        bid = normalize_memo(b.batch_id)
        if b.batch_id not in chosen and len(bid) >= MIN_BATCH_ID:
            chosen[b.batch_id] = [p for p in lines
                                  if id(p) not in linked and bid in memos[id(p)]]
            strong.update(id(p) for p in chosen[b.batch_id])
    for b in batches:
        if not chosen.get(b.batch_id):
            provider = normalize_memo(b.provider)
            chosen[b.batch_id] = [p for p in lines if id(p) not in strong
                                  and p.money == b.net_total and provider in memos[id(p)]]
    claims = Counter(id(p) for ps in chosen.values() for p in ps)
    for b in batches:
        ps = chosen[b.batch_id]
        if len(ps) == 1 and claims[id(ps[0])] == 1:
            _settle_batch(book, b, ps[0])
    for b in batches:
        for p in chosen[b.batch_id]:
            if p.is_open:
                fits = sorted(x for x, qs in chosen.items() if p in qs)
                p.batch_id = fits[0]
                book.hold(Category.AMBIGUOUS, p, batches=fits,
                          why="several gateway batches or credit lines fit")


def _linked_batches(book: Book, batches: list[Batch],
                    lines: list[Payment]) -> tuple[dict[str, list[Payment]], set[int]]:
    """The credit lines a person linked to a batch of the day (resolution *link* of an
    ambiguous gateway credit): that line is the batch, and no other batch may take it."""
    open_lines = {p.line.id: p for p in lines}
    known = {b.batch_id for b in batches}
    chosen: dict[str, list[Payment]] = {}
    taken: set[int] = set()
    for link in sorted(book.inp.links, key=lambda x: (x.line_id, x.batch or "")):
        p = open_lines.get(link.line_id)
        if not link.batch or p is None or id(p) in taken:
            continue
        taken.add(id(p))
        if link.batch in known and link.batch not in chosen:
            chosen[link.batch] = [p]
            continue
        # the batch is no longer this day's to place (an earlier day placed it, or a
        # correction moved it): held again, under its own key — the resolved row's key
        # would hide it from every reviewer
        book.hold(Category.AMBIGUOUS, p, key_suffix=f":{link.batch}", via="link",
                  linked_batch=link.batch, why="the linked batch is not one this day can place")
    return chosen, taken


def _settle_batch(book: Book, b: Batch, p: Payment) -> None:
    p.batch_id = b.batch_id
    net = sum(t.net for t in b.txns)
    broken = [t.provider_txn_id for t in b.txns if t.gross - t.fee != t.net]
    if p.money != b.net_total or net != b.net_total or broken:
        book.hold(Category.BATCH_TOTAL_DIFFERS, p, expected_amount=b.net_total,
                  provider=b.provider, credit=p.money, batch_total=b.net_total,
                  sum_of_net=net, difference=p.money - net, txns_not_adding_up=broken)
        return
    p.is_open = False  # its money now travels in its transactions
    for t in sorted(b.txns, key=lambda t: (t.kind, t.provider_txn_id)):
        if t.kind == "refund":
            _refund(book, b, p, t)
            continue
        event = book.index("txn").get((b.provider, t.provider_txn_id))
        at = t.paid_at or (event.paid_at if event else None)
        q = p.part(b.batch_id, t, at)
        if event is not None and event.id in book.free:
            q.event = book.claim(event)
        code = _txn_code(t.reference, event.reference if event else None)
        if code and code in book.refs:
            q.codes = (code,)
        elif code:
            q.unknown = (code,)
        book.add_payment(q)


def _refund(book: Book, b: Batch, p: Payment, t: BatchTxn) -> None:
    """Money the gateway paid back out of this batch: recorded against its reference
    (negative), never changing the reference's state — the refund was decided earlier."""
    book.matches.append(Match(Rule.REFUND, (Allocation(
        p.line_id, p.line_day, _txn_code(t.reference), t.net, None, b.batch_id,
        t.provider_txn_id),)))


def _txn_code(*candidates: str | None) -> str | None:
    for c in candidates:
        if c:
            compact = c.replace(" ", "").replace("-", "").upper()
            if is_valid(compact):
                return compact
    return None


# --------------------------------------------------------------------------- callback


def callback(book: Book) -> None:
    """Rule 5: a statement line without a usable code, paired with its callback.

    Exact pairing by the bank's transaction reference first. Failing that, a line with a
    time and no near-miss or foreign code is paired with the one free callback of the same amount
    within ``time_tolerance_s`` whose reference has no other payment waiting; two such
    callbacks make the line *ambiguous*. A paired line takes the callback's reference.
    """
    tol = book.policy.time_tolerance_s
    for p in book.codeless():
        if p.codes or p.txn is not None:
            continue
        if p.bank_ref:
            evs = [e for e in book.index("bank_ref").get(p.bank_ref, ()) if e.id in book.free]
            if len(evs) == 1:
                event = p.event = book.claim(evs[0])
                if event.reference in book.refs:
                    book.attribute(p, event.reference)
                continue
            if len(evs) > 1:
                _ambiguous_events(book, p, evs)
                continue
        if p.near or p.unknown or p.at is None:
            continue
        evs = [e for e in book.events_near(p.money, p.at, tol)
               if e.id in book.free and e.reference in book.refs
               and _waiting_for_money(book, e.reference)]
        if len(evs) == 1:
            p.event = book.claim(evs[0])
            book.attribute(p, evs[0].reference)
        elif len(evs) > 1:
            _ambiguous_events(book, p, evs)


def _waiting_for_money(book: Book, code: str) -> bool:
    return book.remaining(code) > 0 and not any(q.is_open for q in book.group(code))


def _ambiguous_events(book: Book, p: Payment, evs: list) -> None:
    book.hold(Category.AMBIGUOUS, p,
              suggested=tuple(dict.fromkeys(e.reference for e in evs if e.reference)),
              events=[e.id for e in evs], why="several callbacks fit this line")


# --------------------------------------------------------------------------- gatekeepers


def wrong_account(book: Book) -> None:
    """The code is a real reference of another collection account (another unit's)."""
    for p in book.doubtful():
        code = p.code
        if code and not book.on_account(code):
            ref = book.refs[code]
            book.hold(Category.WRONG_ACCOUNT, p, reference=code,
                      expected_amount=ref.amount_due, reference_account=ref.account_id)


def expired_or_cancelled(book: Book) -> None:
    """The reference was cancelled, or had expired, when the money was paid."""
    for p in book.doubtful():
        code = p.code
        if code and not book.payable(code, p):
            ref = book.refs[code]
            at = book.time_of(p, code)
            book.hold(Category.EXPIRED_OR_CANCELLED, p, reference=code,
                      expected_amount=ref.amount_due, state=ref.state,
                      expires_at=ref.expires_at.isoformat(),
                      cancelled_at=ref.cancelled_at.isoformat() if ref.cancelled_at else None,
                      paid_at=at.isoformat() if at else None)


# --------------------------------------------------------------------------- per reference


def exact(book: Book) -> None:
    """Rule 1: one payment with one code, for exactly what the reference still owes."""
    for code, group in book.raw_groups():
        rem = book.remaining(code)
        if rem <= 0:
            continue
        if type(group) is Payment:  # one payment names it: the common case, no list
            if group.is_open and group.cover == rem:
                book.allocate_one(Rule.EXACT, group, code)
            continue
        for p in group:
            if p.is_open and p.cover == rem:
                book.allocate_one(Rule.EXACT, p, code)
                break


def multi(book: Book) -> None:
    """Rule 2: one transfer paying several references (several codes, amount = their sum)."""
    for p in book.open_payments(today_only=True):
        if len(p.codes) < 2 or p.money != p.cover:
            continue
        dues = [book.refs[c].amount_due for c in p.codes]
        if (p.money == sum(dues)
                and all(book.on_account(c) and book.payable(c, p)
                        and book.remaining(c) == book.refs[c].amount_due for c in p.codes)):
            book.allocate(Rule.MULTI, [(p, c, due, due) for c, due in zip(p.codes, dues,
                                                                        strict=True)])


def split(book: Book) -> None:
    """Rule 3: several payments (today's and earlier part-payments) summing to what is due."""
    for code, waiting in book.open_groups():
        if len(waiting) >= 2 and sum(p.cover for p in waiting) == book.remaining(code) > 0:
            book.allocate(Rule.SPLIT, [(p, code, p.money, p.cover) for p in waiting])


def over(book: Book) -> None:
    """Payments exceed what is due: the earliest ones pay it, the excess is ``overpaid``.

    Payments after the reference is covered are left for ``duplicate``.
    """
    for code, waiting in book.open_groups():
        rem = book.remaining(code)
        if rem <= 0 or sum(p.cover for p in waiting) <= rem:
            continue
        parts, left, excess = [], rem, None
        for p in waiting:
            if p.cover <= left:
                parts.append((p, code, p.money, p.cover))
                left -= p.cover
            else:
                held = min(p.money, p.cover - left)
                parts.append((p, code, p.money - held, left))
                excess, left = (p, held), 0
            if left == 0:
                break
        match = book.allocate(Rule.OVER if excess else Rule.SPLIT, parts)
        if excess:
            p, held = excess
            book.hold(Category.OVERPAID, p, held, reference=code,
                      expected_amount=book.refs[code].amount_due, match=match.key,
                      paid=sum(q.cover for q, *_ in parts))


def duplicate(book: Book) -> None:
    """Money for a reference already paid in full (today or earlier): refund due."""
    for code, waiting in book.open_groups():
        if book.remaining(code) <= 0:
            prior = book.prior.get(code)
            for p in waiting:
                book.hold(Category.DUPLICATE, p, reference=code,
                          expected_amount=book.refs[code].amount_due,
                          paid_earlier=prior.allocated if prior else 0,
                          paid_today=book.ref_state(code).allocated)


def underpaid(book: Book) -> None:
    """Less than due. Today's part-payments are held; earlier ones stay carried."""
    for code, waiting in book.open_groups():
        rem = book.remaining(code)
        for p in waiting:
            if p.today and rem > 0:
                book.hold(Category.UNDERPAID, p, reference=code, expected_amount=rem,
                          due=book.refs[code].amount_due)
                book.partial.add(code)


def ambiguous(book: Book) -> None:
    """Several codes in one payment that do not add up: a person must split it."""
    for p in book.open_payments(today_only=True):
        if len(p.codes) >= 2:
            book.hold(Category.AMBIGUOUS, p, suggested=p.codes,
                      candidates={c: book.refs[c].amount_due for c in p.codes},
                      why="several references named; amount is not their sum")


def unknown(book: Book) -> None:
    """Nothing usable: suspense. Near-miss codes give suggestions, never a match."""
    for p in book.open_payments(today_only=True):
        book.hold(Category.UNKNOWN_REFERENCE, p, suggested=book.suggestions(p))


# --------------------------------------------------------------------------- callbacks left


def late_callbacks(book: Book) -> None:
    """A callback for a reference whose money an earlier day matched without one."""
    done: set[str] = set()
    for event in [e for e in book.events if e.id in book.free]:
        code = event.reference
        prior = book.prior.get(code) if code else None
        if prior and prior.allocated > 0 and not prior.has_event and code not in done:
            book.claim(event)
            done.add(code)
            book.matches.append(Match(Rule.LATE_CALLBACK,
                                      (Allocation(None, None, code, 0, event.id),)))
            book.clears.update(prior.notices)


def missing_money(book: Book) -> None:
    """A callback said paid; after ``grace_days`` no money has matched it."""
    grace = timedelta(days=book.policy.grace_days)
    for event in [e for e in book.events if e.id in book.free]:
        day = book.business_day(event.paid_at)
        if day > book.day:
            continue
        if day + grace <= book.day:
            book.notice(Category.PAID_NO_MONEY, f"{Category.PAID_NO_MONEY}:E{event.id}",
                        reference=event.reference, expected_amount=event.amount,
                        event_id=event.id, provider=event.provider,
                        provider_txn_id=event.provider_txn_id,
                        paid_at=event.paid_at.isoformat(), business_day=day.isoformat())
        else:
            book.pending_events.append(event.id)


RULES = (manual_links, gateway, callback, wrong_account, expired_or_cancelled, exact, multi,
         split, over, duplicate, underpaid, ambiguous, unknown, late_callbacks, missing_money)
