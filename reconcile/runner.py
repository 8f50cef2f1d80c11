"""The runner: reconcile account-days against storage.

:class:`Reconciler` is what the CLI, the scheduler, the demo and (later) the admin UI call::

    from reconcile.runner import Reconciler
    outcomes = Reconciler(fp).run(date(2025, 12, 1))          # every account
    Reconciler(fp).run_account_day(7, date(2025, 12, 1))      # one

For one account-day it takes the account-day lock (:mod:`reconcile.locks`), loads the
input (:mod:`reconcile.loader`), runs the pure engine, and writes the result
(:mod:`reconcile.persist`) — all in **one transaction**, so a crash at any point leaves
the previous result intact and a re-run simply starts again. Every attempt is a
``recon_runs`` row (attempt 1, 2, …) with its sums; a failure is recorded too.

**The sum check fails loudly.** When the day's statement credits, counted again in SQL,
differ from what the stored matches and mismatches hold, the run is stored with status
``unbalanced``, logged at ERROR, returned with ``balanced = False`` (the CLI exits 3),
and shown first in reports.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, select, text
from sqlalchemy.orm import Session

from feepay.exceptions import NotFound
from feepay.money import format_vnd, now_utc
from feepay.storage.tables import AccountRow
from feepay.storage.tables_reconcile import (
    ReconMismatchRow,
    ReconResolutionRow,
    ReconRunRow,
)
from feepay.storage.tables_statements import StatementImportRow, StatementLineRow
from reconcile import moves, stale
from reconcile.days import days_between, parse_cutoff
from reconcile.engine import ENGINE_VERSION, reconcile_day
from reconcile.loader import batches_fingerprint, load_day
from reconcile.locks import account_day_lock
from reconcile.models import DayResult, Policy
from reconcile.persist import sums, write_result

if TYPE_CHECKING:
    from feepay.api import FeePay

log = logging.getLogger(__name__)
BUSY = "another process is reconciling it"  # the reason of a run skipped for the lock
SQLITE_CACHE_KIB = 65_536  # page cache for a run: random index writes of a big day


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one account-day.

    ``status`` is ``balanced``, ``unbalanced``, ``failed`` or ``skipped`` (already
    reconciled, or another process holds the account-day).
    """

    account_id: int
    day: date
    status: str
    run_id: int | None = None
    attempt: int | None = None
    lines: int = 0
    matches: int = 0
    mismatches: int = 0
    statement_credits: int = 0
    matched: int = 0
    held: int = 0
    references_moved: int = 0
    references_refused: int = 0
    digest: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    later_marked: int = 0  # later account-days this run made stale (reconcile.stale)

    @property
    def balanced(self) -> bool:
        return self.status in ("balanced", "skipped")

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "day": self.day.isoformat()}

    def summary(self) -> str:
        if self.status == "skipped":
            return f"account {self.account_id} {self.day:%d/%m/%Y}: skipped ({self.reason})"
        if self.status == "failed":
            return f"account {self.account_id} {self.day:%d/%m/%Y}: FAILED — {self.reason}"
        check = "balanced" if self.status == "balanced" else "UNBALANCED"
        return (f"account {self.account_id} {self.day:%d/%m/%Y}: {self.lines} lines, "
                f"{self.matches} matches, {self.mismatches} mismatches; credits "
                f"{format_vnd(self.statement_credits)} = matched {format_vnd(self.matched)} "
                f"+ held {format_vnd(self.held)} → {check}")


def result_digest(result: DayResult) -> str:
    """A fingerprint of a result (what was matched and held, how much): equal digests,
    equal decisions. Re-running an unchanged day must reproduce it."""
    h = hashlib.sha256()
    for m in result.matches:
        h.update(m.key.encode())
        for a in m.allocations:
            h.update(f"|{a.line_id}|{a.code}|{a.amount}|{a.event_id}".encode())
    for x in result.mismatches:
        h.update(f"#{x.key}|{x.amount}|{x.reference}|{x.event_id}".encode())
    h.update(f"={result.credits}|{result.matched}|{result.held}".encode())
    return h.hexdigest()


def _has_channel(s: Session, account_id: int) -> bool:
    """Whether callbacks are expected for the account: a callback channel serves it, or it
    has received callbacks before. Otherwise money without one is normal, not a notice."""
    from feepay.storage.tables import ReferenceRow
    from feepay.storage.tables_callbacks import ChannelRow, PaymentEventRow

    E, R = PaymentEventRow, ReferenceRow
    for q in (select(ChannelRow.id).where(ChannelRow.account_id == account_id),
              select(E.id).where(E.account_id == account_id),
              select(E.id).join(R, R.id == E.reference_id).where(R.account_id == account_id)):
        if s.scalar(q.limit(1)) is not None:
            return True
    return False


class Reconciler:
    """Reconcile account-days of one feepay database.

    Args:
        fp: the FeePay handle.
        policy: defaults for grace, look-back and tolerances (the cut-off comes from
            each account).
    """

    def __init__(self, fp: FeePay, policy: Policy | None = None) -> None:
        self.fp = fp
        self.policy = policy or Policy()

    # -- which account-days -----------------------------------------------------------
    def accounts_for(self, day: date) -> list[int]:
        """Accounts to reconcile on ``day``: active or retired ones, and any with lines."""
        A, L = AccountRow, StatementLineRow
        with self.fp.db.session() as s:
            ids = set(s.scalars(select(A.id).where(A.state.in_(("active", "retired")),
                                                   A.valid_from <= day)))
            # per account, through the (account, day) index: a DISTINCT over the day's
            # lines would read the index of every line ever imported
            ids |= set(s.scalars(select(A.id).where(exists().where(
                L.account_id == A.id, L.posting_date == day))))
        return sorted(ids)

    def imported_days(self, since: datetime, before: date,
                      max_age_days: int = 92) -> list[tuple[int, date]]:
        """Account-days before ``before`` (and at most ``max_age_days`` before it) that a
        file imported since ``since`` may change: the days of a statement that brought new
        lines and have lines, and every day of a settlement file's period (which covers the
        days a replaced batch settled on before its correction) and the batch lag after
        it. The scheduler runs those not up to date, however long after its day the file
        came (within ``max_age_days``). Sorted by day, then account."""
        Imp = StatementImportRow
        first, last = before - timedelta(days=max_age_days), before - timedelta(days=1)
        out: set[tuple[int, date]] = set()
        with self.fp.db.session() as s:
            imports = s.execute(select(Imp.account_id, Imp.kind, Imp.period_start,
                                       Imp.period_end).where(
                Imp.imported_at >= since, Imp.period_start.is_not(None),
                Imp.period_end.is_not(None),
                (Imp.kind == "settlement") | (Imp.lines_new > 0))).all()
            for acc, kind, start, end in imports:
                lag = self.policy.batch_lag_days if kind == "settlement" else 0
                days = days_between(max(start, first), min(end + timedelta(days=lag), last))
                if kind == "statement":
                    days = [d for d in days if self._has_lines(s, acc, d)]
                out.update((acc, d) for d in days)
        return sorted(out, key=lambda k: (k[1], k[0]))

    @staticmethod
    def _has_lines(s: Session, account_id: int, day: date) -> bool:
        L = StatementLineRow
        return s.scalar(select(L.id).where(L.account_id == account_id, L.posting_date == day)
                        .limit(1)) is not None

    def stale_days(self) -> list[tuple[int, date]]:
        """Account-days an earlier day's run marked stale (:mod:`reconcile.stale`)."""
        with self.fp.db.session() as s:
            return stale.stale_days(s)

    def is_done(self, account_id: int, day: date) -> bool:
        """Whether the account-day needs no new run (the scheduler's question): its latest
        attempt balanced, no earlier day's run marked it stale (:mod:`reconcile.stale`), no
        line of the day was linked by a person since, and what it read is still what
        storage holds — the same number and sum of credit lines, and the same settlement
        batches (:func:`reconcile.loader.fingerprint`). A statement or settlement file
        imported after its day was reconciled (even one whose import was still committing
        while the run read), a run that could not balance or failed, or a link whose
        re-run died, is run again by the next night."""
        R, L = ReconRunRow, StatementLineRow
        with self.fp.db.session() as s:
            last = s.execute(select(R.status, R.lines, R.statement_credits, R.started_at,
                                    R.batches_seen)
                             .where(R.account_id == account_id, R.day == day)
                             .order_by(R.attempt.desc()).limit(1)).first()
            if last is None or last.status != "balanced":  # also: the last attempt failed
                return False
            if stale.marks(s, account_id, day):  # an earlier day's run changed since
                return False
            if self._linked_since(s, account_id, day, last.started_at):
                return False
            now = s.execute(select(func.count(), func.coalesce(func.sum(L.amount), 0)).where(
                L.account_id == account_id, L.posting_date == day,
                L.direction == "credit")).one()
            if (now[0], int(now[1])) != (last.lines, last.statement_credits):
                return False
            # a run stored before migration 0011 has no fingerprint: run it once more
            return last.batches_seen == batches_fingerprint(s, account_id, day, self.policy)

    @staticmethod
    def _linked_since(s: Session, account_id: int, day: date, since: datetime) -> bool:
        """Whether a person linked one of the day's lines after ``since`` (the re-run a
        link starts may have failed, or its process died)."""
        X, Res = ReconMismatchRow, ReconResolutionRow
        return s.scalar(select(Res.id).join(X, X.id == Res.mismatch_id).where(
            X.account_id == account_id, X.day >= day,  # raised no earlier than its line
            X.line_day == day, Res.action == "link", Res.at > since).limit(1)) is not None

    # -- running ----------------------------------------------------------------------
    def run(self, day: date, account_id: int | None = None, *, trigger: str = "manual",
            actor: str = "system", skip_done: bool = False, wait: bool = True,
            progress=None) -> list[RunOutcome]:  # noqa: ANN001 - a callable or None
        """Reconcile ``day`` for one account or all; one outcome per account."""
        accounts = [account_id] if account_id is not None else self.accounts_for(day)
        return self.run_days([(acc, day) for acc in accounts], trigger=trigger, actor=actor,
                             skip_done=skip_done, wait=wait, progress=progress)

    def run_days(self, todo: list[tuple[int, date]], *, trigger: str = "manual",
                 actor: str = "system", skip_done: bool = False, wait: bool = True,
                 progress=None) -> list[RunOutcome]:  # noqa: ANN001 - a callable or None
        """Reconcile each (account, day) of ``todo`` in turn, each in its own transaction,
        then apply the reference states they asked for, all at once (:mod:`reconcile.moves`);
        one outcome each, in order. ``progress`` is called with each outcome."""
        out: list[RunOutcome] = []
        try:
            for acc, day in todo:
                out.append(self._run_account_day(acc, day, trigger=trigger, actor=actor,
                                                 skip_done=skip_done, wait=wait))
                if progress is not None:
                    progress(out[-1])
        finally:  # whatever the committed runs queued is applied, even if one raised
            applied = self._try_apply(out)
        return self._with_moves(out, applied)

    def run_account_day(self, account_id: int, day: date, *, trigger: str = "manual",
                        actor: str = "system", skip_done: bool = False,
                        wait: bool = True) -> RunOutcome:
        """Reconcile one account-day under its lock, and apply the reference states it
        asked for.

        Args:
            skip_done: the scheduler's mode — do nothing if the account-day is up to
                date (:meth:`is_done`).
            wait: wait for another process's run of the same account-day to finish
                (manual runs) rather than skip it (schedulers).
        """
        return self.run_days([(account_id, day)], trigger=trigger, actor=actor,
                             skip_done=skip_done, wait=wait)[0]

    def apply_moves(self) -> moves.Applied:
        """Apply every queued reference move now (also those a crashed process left).

        Each reference moved back from ``settled`` (a re-run no longer matched its money)
        gets an entry in the audit log, in the apply's transaction, under the actor of the
        run that asked: the state was the night's, not a person's, but it changes what the
        case system may have been told."""
        with self.fp.db.session() as s:
            applied = moves.apply(s.connection(), now_utc())
            if applied.unsettled:
                R = ReconRunRow
                actors = dict(s.execute(select(R.id, R.actor).where(
                    R.id.in_(applied.unsettled_by_run))).all())
                for u in applied.unsettled:
                    self.fp.audit.append(s, actor=actors.get(u.run_id, "system"),
                                         action="references.unsettle",
                                         object_type="reference", object_id=u.code,
                                         details=u.details())
            return applied

    def _try_apply(self, outcomes: list[RunOutcome]) -> moves.Applied | None:
        """Apply the queue if these runs added to it (it then also takes what a crashed
        process left). A failure leaves the moves queued for the next run."""
        if not any(o.references_moved for o in outcomes):
            return None
        try:
            return self.apply_moves()
        except Exception:
            log.exception("applying the reference states of %d run(s) failed; they stay "
                          "queued", len(outcomes))
            return None

    @staticmethod
    def _with_moves(outcomes: list[RunOutcome],
                    applied: moves.Applied | None) -> list[RunOutcome]:
        """Outcomes with what the apply did for each run: ``references_moved`` counts the
        moves applied (a re-run's moves find their state already there; a move back from
        settled that another day's money kept settled is not one), ``references_refused``
        the references its guard refused (cancelled meanwhile, say)."""
        if applied is None:
            return outcomes
        refused, kept = applied.refused, applied.kept
        return [replace(o, references_moved=o.references_moved - refused.get(o.run_id, 0)
                        - kept.get(o.run_id, 0),
                        references_refused=refused.get(o.run_id, 0))
                if o.run_id in refused or o.run_id in kept else o for o in outcomes]

    def _run_account_day(self, account_id: int, day: date, *, trigger: str, actor: str,
                         skip_done: bool, wait: bool) -> RunOutcome:
        with account_day_lock(self.fp.db, account_id, day, wait=wait) as got:
            if not got:
                return RunOutcome(account_id, day, "skipped",
                                  reason=BUSY)
            if skip_done and self.is_done(account_id, day):
                return RunOutcome(account_id, day, "skipped", reason="already reconciled")
            started = now_utc()
            # Millions of acyclic objects (rows, engine values, result rows): the cyclic
            # collector would walk them again and again while they pile up (a tenth of a
            # big run). Off for the run, back to what it was afterwards.
            collecting = gc.isenabled()
            gc.disable()
            try:
                with self.fp.db.session() as s:
                    outcome = self._run(s, account_id, day, trigger, actor, started)
            except NotFound:
                raise
            except Exception as exc:
                log.exception("reconciliation of account %s on %s failed", account_id, day)
                return self._record_failure(account_id, day, trigger, actor, started, exc)
            finally:
                if collecting:
                    gc.enable()
        if outcome.status == "unbalanced":
            log.error("SUM CHECK FAILED for account %s on %s: statement credits %s != "
                      "matched %s + held %s (run %s)", account_id, day,
                      outcome.statement_credits, outcome.matched, outcome.held, outcome.run_id)
        else:
            log.info("%s", outcome.summary())
        return outcome

    def _run(self, s: Session, account_id: int, day: date, trigger: str, actor: str,
             started: datetime) -> RunOutcome:
        account = s.get(AccountRow, account_id)
        if account is None:
            raise NotFound(f"no collection account {account_id}", field="account")
        if s.get_bind().dialect.name == "sqlite":  # a night's indexes do not fit 2 MB
            s.execute(text(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))
        policy = replace(self.policy, cutoff=parse_cutoff(account.cutoff),
                         expect_callbacks=self.policy.expect_callbacks and _has_channel(
                             s, account_id))
        clock = time.perf_counter()
        seen = stale.marks(s, account_id, day)  # settled by this run: it reads what's now
        loaded = load_day(s, account_id, day, policy)
        phases = {"load": time.perf_counter() - clock}
        clock = time.perf_counter()
        result = reconcile_day(loaded.input)
        phases["engine"] = time.perf_counter() - clock
        n_lines = len(loaded.input.lines)
        loaded.input = None  # type: ignore[assignment] - free the input before writing
        clock = time.perf_counter()
        was = stale.before(s, account_id, day)  # the stored result, before it is replaced
        run = ReconRunRow(account_id=account_id, day=day, attempt=self._next_attempt(
            s, account_id, day), trigger=trigger, actor=actor, status="balanced",
            engine_version=ENGINE_VERSION, started_at=started, finished_at=started,
            batches_seen=loaded.batches_seen)
        s.add(run)
        s.flush()
        now = now_utc()
        # the digest is pure Python over the frozen result: a helper thread computes it
        # while the database updates the references (the driver releases the GIL then)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recon-digest") as helper:
            digested: list[Future[str]] = []
            queued = write_result(
                s, run.id, result, loaded.ref_ids, now,
                on_update=lambda: digested.append(helper.submit(result_digest, result)),
                later_ran=was is not None)
            phases["write"] = time.perf_counter() - clock
            clock = time.perf_counter()
            check = sums(s, run.id, account_id, day)
            phases["sum_check"] = time.perf_counter() - clock
            digest = digested[0].result() if digested else result_digest(result)
        balanced = check.balanced and check.statement_credits == result.credits
        run.status = "balanced" if balanced else "unbalanced"
        run.finished_at = now_utc()
        run.lines, run.matches, run.mismatches = (n_lines, len(result.matches),
                                                  len(result.mismatches))
        run.statement_credits, run.matched_amount, run.held_amount = (
            check.statement_credits, check.matched, check.held)
        run.result_digest = digest
        if balanced:  # an unbalanced run is retried: what made the day stale still holds
            stale.unmark(s, seen)
        later = stale.mark_later(s, run, result, loaded.ref_ids, was, now)
        if later:
            log.info("account %s on %s: %d later account-day(s) name references this run "
                     "decided anew; marked stale (the nightly job runs them)", account_id,
                     day, later)
        self.fp.audit.append(s, actor=actor, action="reconcile.run", object_type="account_day",
                             object_id=f"{account_id}:{day.isoformat()}",
                             details={"run_id": run.id, "attempt": run.attempt,
                                      "trigger": trigger, "status": run.status,
                                      "credits": check.statement_credits,
                                      "matched": check.matched, "held": check.held,
                                      "digest": digest, "host": socket.gethostname()})
        return RunOutcome(account_id, day, run.status, run.id, run.attempt, n_lines,
                          len(result.matches), len(result.mismatches),
                          check.statement_credits, check.matched, check.held, queued, 0,
                          digest, None, (run.finished_at - started).total_seconds(),
                          {k: round(v, 3) for k, v in phases.items()}, later)

    @staticmethod
    def _next_attempt(s: Session, account_id: int, day: date) -> int:
        last = s.scalar(select(func.max(ReconRunRow.attempt)).where(
            ReconRunRow.account_id == account_id, ReconRunRow.day == day))
        return (last or 0) + 1

    def _record_failure(self, account_id: int, day: date, trigger: str, actor: str,
                        started: datetime, exc: Exception) -> RunOutcome:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        with self.fp.db.session() as s:
            run = ReconRunRow(account_id=account_id, day=day,
                              attempt=self._next_attempt(s, account_id, day), trigger=trigger,
                              actor=actor, status="failed", engine_version=ENGINE_VERSION,
                              started_at=started, finished_at=now_utc(), error=reason)
            s.add(run)
            s.flush()
            return RunOutcome(account_id, day, "failed", run.id, run.attempt, reason=reason)

    # -- reading ----------------------------------------------------------------------
    def runs(self, *, day: date | None = None, account_id: int | None = None,
             limit: int = 100) -> list[dict[str, object]]:
        R = ReconRunRow
        q = select(R).order_by(R.day.desc(), R.account_id, R.attempt.desc()).limit(limit)
        if day is not None:
            q = q.where(R.day == day)
        if account_id is not None:
            q = q.where(R.account_id == account_id)
        with self.fp.db.session() as s:
            return [{c.name: getattr(r, c.name) for c in R.__table__.columns}
                    for r in s.scalars(q)]
