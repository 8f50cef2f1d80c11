"""Scenario notation for the engine: readable JSON in, readable JSON out.

Used by the golden tests (``tests/reconcile/scenarios/``) and handy for trying a rule by
hand. A scenario (``tests/reconcile/scenarios/<name>/scenario.json``) describes one or more
engine runs. Reference codes are written symbolically so the files stay readable:
``@A`` is a real, valid code derived from the name ``A`` (a capital letter and optional
digits: ``@B2``); ``@A~`` is that code with one character mistyped (a near miss: its check
fails). A line's ``"mangle"`` applies what bank apps do after the codes are written in:
``"lower"`` lower-cases the memo, ``"split"`` puts a space inside each code.
Defaults keep the files short:
a reference is on the run's account, issued, expiring far in the future; a line is posted
on the run's day. The expected result (``expected.json``) uses the same notation.

Regenerate after an intended change: ``FEEPAY_REGEN_GOLDEN=1 pytest tests/reconcile``,
then read the diff.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from typing import Any

from feepay import reference as codes
from reconcile.days import parse_cutoff
from reconcile.models import (
    Batch,
    BatchTxn,
    Carried,
    DayInput,
    DayResult,
    Expected,
    ManualLink,
    Policy,
    Prior,
    Reported,
    Settled,
)

FAR = "2099-12-31T23:59:59+07:00"
_SYMBOL = re.compile(r"@([A-Z][0-9]*)(~?)")


def code_for(name: str) -> str:
    """A valid reference code derived from a symbolic name (stable across runs)."""
    digest = hashlib.sha256(name.encode()).digest()
    body = "".join(codes.ALPHABET[b % len(codes.ALPHABET)] for b in digest[:8])
    return codes.PREFIX + body + codes.calc_check_digits(body)


def typo_of(code: str) -> str:
    """The code with its 5th character replaced: check fails, one edit away."""
    i = 4
    sub = codes.ALPHABET[(codes.ALPHABET.index(code[i]) + 1) % len(codes.ALPHABET)]
    return code[:i] + sub + code[i + 1:]


def expand(text: str) -> str:
    return _SYMBOL.sub(lambda m: typo_of(code_for(m[1])) if m[2] else code_for(m[1]), text)


def mangle(memo: str, how: str) -> str:
    """Damage a memo the way bank apps do (see the module docstring)."""
    if "split" in how:
        memo = re.sub(r"FP[0-9A-Z]{10}", lambda m: m[0][:6] + " " + m[0][6:], memo)
    return memo.lower() if "lower" in how else memo


class Symbols:
    """Maps real codes (and their typos) back to ``@A`` / ``@A~`` for readable output."""

    def __init__(self, names: set[str]) -> None:
        self.back = {}
        for n in names:
            self.back[code_for(n)] = f"@{n}"
            self.back[typo_of(code_for(n))] = f"@{n}~"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            for real, sym in self.back.items():
                value = value.replace(real, sym)
            return value
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        return value


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def build_input(run: dict[str, Any]) -> DayInput:
    day = date.fromisoformat(run["day"])
    account = run.get("account", 1)
    pol = run.get("policy", {})
    policy = Policy(cutoff=parse_cutoff(pol.get("cutoff")),
                    grace_days=pol.get("grace_days", 2),
                    lookback_days=pol.get("lookback_days", 7),
                    time_tolerance_s=pol.get("time_tolerance_s", 900),
                    batch_lag_days=pol.get("batch_lag_days", 3))

    def line(x: dict[str, Any]) -> Settled:
        return Settled(x["id"], date.fromisoformat(x.get("posted", run["day"])), x["amount"],
                       mangle(expand(x.get("memo", "")), x.get("mangle", "")),
                       _dt(x.get("at")), x.get("bank_ref"))

    refs = tuple(Expected(i + 1, expand(r["code"]), r.get("account", account),
                          r["amount_due"], _dt(r.get("expires", FAR)), r.get("state", "issued"),
                          _dt(r.get("cancelled_at")))
                 for i, r in enumerate(run.get("references", [])))
    events = tuple(Reported(e["id"], e.get("provider", "sepay"), e.get("txn", f"T{e['id']}"),
                            e["amount"], _dt(e["paid_at"]),
                            expand(e["reference"]) if e.get("reference") else None,
                            e.get("bank_ref"), expand(e.get("memo", "")) or None)
                   for e in run.get("events", []))
    batches = tuple(Batch(b["batch_id"], b.get("provider", "vnpay"),
                          date.fromisoformat(b.get("settled_on", run["day"])), b["net_total"],
                          tuple(BatchTxn(t["txn"], t["gross"], t["fee"], t["net"],
                                         expand(t["reference"]) if t.get("reference") else None,
                                         _dt(t.get("paid_at")))
                                for t in b.get("txns", [])))
                    for b in run.get("batches", []))
    prior = tuple(Prior(expand(p["code"]), p["allocated"], p.get("has_event", False),
                        tuple(expand(k) for k in p.get("notices", [])))
                  for p in run.get("prior", []))
    carried = tuple(Carried(line(c["line"]), expand(c["code"]),
                            c.get("key", f"underpaid:L{c['line']['id']}"), c.get("event_id"))
                    for c in run.get("carried", []))
    links = tuple(ManualLink(x["line_id"], expand(x["code"])) for x in run.get("links", []))
    return DayInput(account, day, tuple(line(x) for x in run.get("lines", [])), events,
                    batches, refs, prior, carried, links, policy)


def render(result: DayResult, symbols: Symbols) -> dict[str, Any]:
    """The result as stable, readable JSON (codes back to ``@A``)."""
    def alloc(a: Any) -> dict[str, Any]:
        out = {"line": a.line_id, "code": a.code, "amount": a.amount}
        if a.line_day is not None and a.line_day != result.day:
            out["line_day"] = a.line_day.isoformat()
        for k in ("event_id", "batch_id", "txn_id"):
            if getattr(a, k) is not None:
                out[k.removesuffix("_id") if k == "event_id" else k] = getattr(a, k)
        return out

    def mismatch(m: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"key": m.key, "category": str(m.category), "amount": m.amount}
        for k in ("reference", "expected_amount", "line_id", "event_id", "batch_id"):
            if getattr(m, k) is not None:
                out[k] = getattr(m, k)
        if m.line_day is not None and m.line_day != result.day:
            out["line_day"] = m.line_day.isoformat()
        if m.suggested:
            out["suggested"] = list(m.suggested)
        out["evidence"] = m.evidence
        return out

    data = {
        "matches": [{"key": m.key, "rule": str(m.rule), "allocations": [alloc(a) for a in
                                                                       m.allocations]}
                    for m in sorted(result.matches, key=lambda m: m.key)],
        "mismatches": [mismatch(m) for m in result.mismatches],
        "updates": [{"code": u.code, "state": u.state, "allocated": u.allocated,
                     "paid_at": u.paid_at.isoformat() if u.paid_at else None}
                    for u in sorted(result.updates, key=lambda u: u.code)],
        "clears": list(result.clears),
        "claimed_events": sorted(result.claimed_events()),
        "pending_events": list(result.pending_events),
        "sums": {"credits": result.credits, "matched": result.matched, "held": result.held},
    }
    return symbols(json.loads(json.dumps(data, default=str)))
