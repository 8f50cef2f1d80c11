"""The nightly job and the scheduler that runs it.

:func:`nightly` reconciles, for every account, the previous local day (and catches up on
the few days before it, on older days that files imported late touch, and on days an
earlier day's run made stale — those that are not up to date). It is the whole job: the day is an
argument, so tests and ``feepay scheduler --once`` call it directly.

:func:`build_scheduler` registers it with its own ``schedule.Scheduler()`` (no hidden
global) at a local time in Asia/Ho_Chi_Minh — ``schedule`` needs pytz for that, which
feepay depends on. The job is wrapped so that an exception is logged and reported and the
scheduler lives on to the next night (``schedule`` itself would let it escape).

Exactly once: any number of schedulers — threads, processes, hosts sharing one
PostgreSQL — may run the job at the same moment. Each account-day is taken under its lock
(:mod:`reconcile.locks`) without waiting, and skipped when a finished run already exists;
so each account-day is reconciled once, by whichever scheduler got there first.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import schedule

from feepay.exceptions import ValidationError
from feepay.money import VN_TZ, now_utc
from reconcile.runner import BUSY, Reconciler, RunOutcome

if TYPE_CHECKING:
    from feepay.api import FeePay

log = logging.getLogger(__name__)
TIMEZONE = "Asia/Ho_Chi_Minh"
DEFAULT_AT = "06:00"  # after banks' overnight statement exports
LATE_MAX_DAYS = 92  # a file older than a quarter is reconciled by hand (feepay reconcile)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def check_at(at: str) -> str:
    """``at`` if it is a local time of day written ``HH:MM`` (00:00–23:59).

    Raises:
        ValidationError: (field ``at``) anything else — ``6:00``, ``25:00``, ``06:00:30``
            — naming where the value comes from (``--at`` or ``FEEPAY_RECONCILE_AT``).
    """
    if not isinstance(at, str) or not _HH_MM.fullmatch(at):
        raise ValidationError(f"{at!r} is not a time of day: write HH:MM, 00:00 to 23:59 "
                              "(from --at or FEEPAY_RECONCILE_AT)", field="at")
    return at


def yesterday(now: datetime | None = None) -> date:
    """The previous local day: what a morning run reconciles."""
    return (now or now_utc()).astimezone(VN_TZ).date() - timedelta(days=1)


def nightly(fp: FeePay, day: date | None = None, *, catch_up_days: int = 3,
            actor: str = "scheduler", now: datetime | None = None,
            reconciler: Reconciler | None = None) -> list[RunOutcome]:
    """Reconcile ``day`` (default yesterday) and up to ``catch_up_days`` before it, and
    the older days that changed since.

    Only account-days that are not up to date run (:meth:`Reconciler.is_done`): a
    scheduler that was down, a night that failed, a file imported after its night. Older
    days run first, oldest first: those a file imported within the window (and a day's
    margin) touches, up to :data:`LATE_MAX_DAYS` before the window, and those an earlier
    day's run marked stale (:mod:`reconcile.stale`), whatever their age — also the ones
    this night's own runs mark. Returns every outcome, skipped ones included.
    """
    day = day or yesterday(now)
    rec = reconciler or Reconciler(fp)
    first = day - timedelta(days=catch_up_days)
    night = _Night(rec, actor)
    _older_days(night, first, (now or now_utc()) - timedelta(days=catch_up_days + 2))
    for back in range(catch_up_days, -1, -1):
        d = day - timedelta(days=back)
        night.run([(acc, d) for acc in rec.accounts_for(d)])
    _log_summary(day, night.outcomes)
    return night.outcomes


class _Night:
    """One night's runs, day after day. A day another process holds (a scheduler, a
    person's re-run) is waited for, not skipped: the account's later days must not run
    before it commits, or they would be computed without it (and nothing would mark them
    stale). Once it is free the day is usually up to date, and skipped."""

    def __init__(self, rec: Reconciler, actor: str) -> None:
        self.rec, self.actor = rec, actor
        self.outcomes: list[RunOutcome] = []

    def run(self, todo: list[tuple[int, date]]) -> None:
        out = self.rec.run_days(todo, trigger="scheduler", actor=self.actor, skip_done=True,
                                wait=False)
        held = [(o.account_id, o.day) for o in out if o.reason == BUSY]
        if held:
            log.info("nightly reconciliation: waiting for %d account-day(s) another process "
                     "holds", len(held))
            again = iter(self.rec.run_days(held, trigger="scheduler", actor=self.actor,
                                           skip_done=True, wait=True))
            out = [next(again) if o.reason == BUSY else o for o in out]
        self.outcomes += out


def _older_days(night: _Night, first: date, since: datetime) -> None:
    """Run the account-days before ``first`` that late files touch or earlier runs marked
    stale, day by day, oldest first; a day's runs may mark later ones, which join. A
    failure to find them is logged and the window still runs."""
    rec = night.rec
    done: set[tuple[int, date]] = set()
    try:
        pending = set(rec.imported_days(since, first, LATE_MAX_DAYS))
    except Exception:  # noqa: BLE001 - the marked days and the window must still run
        log.exception("nightly reconciliation: the days late files touch could not be found")
        pending = set()
    while pending := (pending | _marked_before(rec, first)) - done:
        d = min(k[1] for k in pending)
        todo = sorted(k for k in pending if k[1] == d)
        done.update(todo)
        try:
            night.run(todo)
        except Exception:  # noqa: BLE001 - one day's trouble must not stop the later ones
            log.exception("nightly reconciliation of %s failed; the next days run anyway", d)


def _marked_before(rec: Reconciler, first: date) -> set[tuple[int, date]]:
    try:
        return {k for k in rec.stale_days() if k[1] < first}
    except Exception:  # noqa: BLE001 - the window must still run
        log.exception("nightly reconciliation: the days marked stale could not be read")
        return set()


def _log_summary(day: date, outcomes: list[RunOutcome]) -> None:
    done = [o for o in outcomes if o.status != "skipped"]
    bad = [o for o in outcomes if o.status in ("unbalanced", "failed")]
    log.info("nightly reconciliation up to %s: %d account-days run, %d skipped, %d with "
             "problems", day, len(done), len(outcomes) - len(done), len(bad))
    for o in bad:
        log.error("nightly reconciliation: %s", o.summary())


def safe(job: Callable[[], Any]) -> Callable[[], Any]:
    """Log and swallow a job's exception so the scheduler survives to the next run."""

    @functools.wraps(job)
    def wrapper() -> Any:
        try:
            return job()
        except Exception:  # noqa: BLE001 - log-and-continue is the point
            log.exception("scheduled job %s failed; will run again at the next time",
                          getattr(job, "__name__", job))
            return None

    return wrapper


def build_scheduler(job: Callable[[], Any], at: str = DEFAULT_AT,
                    tz: str = TIMEZONE) -> schedule.Scheduler:
    """A fresh ``schedule.Scheduler`` running ``job`` daily at local time ``at`` in ``tz``.

    Raises:
        ValidationError: ``at`` is not ``HH:MM`` (:func:`check_at`).
    """
    scheduler = schedule.Scheduler()
    scheduler.every().day.at(check_at(at), tz).do(safe(job))
    return scheduler


def serve(fp: FeePay, *, at: str = DEFAULT_AT, catch_up_days: int = 3,
          stop: threading.Event | None = None, poll_seconds: float = 30.0) -> None:
    """Run the nightly job every day at ``at`` until ``stop`` is set (or forever).

    Raises:
        ValidationError: ``at`` is not ``HH:MM`` — checked before anything runs.
    """
    check_at(at)
    stop = stop or threading.Event()
    scheduler = build_scheduler(lambda: nightly(fp, catch_up_days=catch_up_days), at)
    log.info("feepay scheduler: nightly reconciliation daily at %s %s; next run %s",
             at, TIMEZONE, scheduler.next_run)
    while not stop.is_set():
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        stop.wait(min(poll_seconds, max(idle if idle is not None else poll_seconds, 0.5)))
