"""`feepay` sub-commands of this package (gathered by webapp/cli.py).

``reconcile``   reconcile a day (or days) by hand: ``feepay reconcile --day 2025-12-01``
``scheduler``   run the nightly job at a local time, or ``--once``
``mismatches``  list, show and resolve mismatches (``resolve ID --action …``)
``report``      per unit and day/period, as JSON, CSV and XLSX

Exit status: 0 when every account-day balanced; **3 when a run could not balance or
failed** (the message on stderr says which); 2 for refused input (clikit).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import click

from feepay import clikit
from feepay.exceptions import ValidationError
from feepay.money import format_date, format_vnd
from feepay.storage.tables_reconcile import ACTIONS, MISMATCH_STATUSES
from reconcile.models import CATEGORY_LABELS, Category

EXIT_UNBALANCED = 3


def _fail_if_unbalanced(outcomes: list) -> None:  # noqa: ANN001 - RunOutcome list
    bad = [o for o in outcomes if o.status in ("unbalanced", "failed")]
    for o in bad:
        click.echo(f"ERROR: {o.summary()}", err=True)
    if bad:
        sys.exit(EXIT_UNBALANCED)


# --------------------------------------------------------------------------- reconcile


@click.command("reconcile")
@click.option("--day", "day_text", default=None, help="Business day, YYYY-MM-DD.")
@click.option("--through", "through_text", default=None,
              help="Last day of a range (inclusive), YYYY-MM-DD.")
@click.option("--account", "account_id", type=int, default=None,
              help="One collection account (default: every account).")
@click.option("--by", "actor", default="cli", show_default=True, help="Who runs it.")
@click.option("--apply-queued", is_flag=True,
              help="Only apply reference states that runs queued and could not apply "
                   "(a night that died), then exit.")
@clikit.json_option
@clikit.command
def reconcile_cmd(fp, day_text: str | None, through_text: str | None,  # noqa: ANN001
                  account_id: int | None, actor: str, apply_queued: bool,
                  as_json: bool) -> None:
    """Reconcile one business day (or a range) for one account or all.

    Re-running a day replaces its matches, keeps every resolution, and stores a new
    attempt. Exits 3 if any account-day does not balance.
    """
    from reconcile.runner import Reconciler

    if apply_queued:
        applied = Reconciler(fp).apply_moves()
        back = [u.code for u in applied.unsettled]
        clikit.emit(as_json, {"moved": applied.moved, "refused": applied.refused,
                              "moved_back": back},
                    lambda: f"{applied.moved} reference(s) moved, "
                            f"{sum(applied.refused.values())} refused"
                            + (f"; back from settled: {', '.join(back)}" if back else ""))
        return
    if day_text is None:
        raise ValidationError("--day is required (or --apply-queued)", field="day")
    first = clikit.parse_day(day_text, "day")
    last = clikit.parse_day(through_text, "through") or first
    if last < first:
        raise ValidationError("--through is before --day", field="through")
    rec = Reconciler(fp)
    todo = [(first + timedelta(days=i), acc) for i in range((last - first).days + 1)
            for acc in ([account_id] if account_id is not None
                        else rec.accounts_for(first + timedelta(days=i)))]
    show_bar = not as_json and sys.stderr.isatty() and len(todo) > 1
    with click.progressbar(length=len(todo), label="Đối soát", file=sys.stderr,
                           hidden=not show_bar) as bar:
        outcomes = rec.run_days([(acc, day) for day, acc in todo], trigger="manual",
                                actor=actor, progress=lambda _outcome: bar.update(1))
    clikit.emit(as_json, {"runs": [o.as_dict() for o in outcomes]},
                lambda: "\n".join(o.summary() for o in outcomes) or "nothing to reconcile")
    _fail_if_unbalanced(outcomes)


# --------------------------------------------------------------------------- scheduler


def _checked_at(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--at`` checked while the command line is read: before the database is opened."""
    from reconcile.scheduler import check_at

    try:
        return check_at(value)
    except ValidationError as exc:
        clikit.refuse(exc)


@click.command("scheduler")
@click.option("--at", "at_time", default=lambda: os.environ.get("FEEPAY_RECONCILE_AT", "06:00"),
              show_default="06:00 or FEEPAY_RECONCILE_AT", callback=_checked_at,
              help="Local time (Asia/Ho_Chi_Minh) of the nightly run, HH:MM.")
@click.option("--catch-up", "catch_up", type=int, default=3, show_default=True,
              help="Also run up to this many earlier days that have no finished run.")
@click.option("--once", is_flag=True, help="Run the nightly job now, once, and exit.")
@click.option("--day", "day_text", default=None,
              help="With --once: the day to reconcile (default yesterday).")
@clikit.json_option
@clikit.command
def scheduler_cmd(fp, at_time: str, catch_up: int, once: bool, day_text: str | None,  # noqa: ANN001
                  as_json: bool) -> None:
    """Reconcile every account's previous day each night at a local time.

    Any number of schedulers may run (processes, hosts on one PostgreSQL): each
    account-day is reconciled exactly once. Errors are logged and the scheduler goes on.
    """
    from reconcile.scheduler import nightly, serve

    if once:
        outcomes = nightly(fp, clikit.parse_day(day_text, "day"), catch_up_days=catch_up)
        clikit.emit(as_json, {"runs": [o.as_dict() for o in outcomes]},
                    lambda: "\n".join(o.summary() for o in outcomes) or "nothing to do")
        _fail_if_unbalanced(outcomes)
        return
    if day_text:
        raise ValidationError("--day needs --once", field="day")
    click.echo(f"feepay scheduler: nightly reconciliation at {at_time} Asia/Ho_Chi_Minh "
               "(Ctrl-C to stop)", err=True)
    try:
        serve(fp, at=at_time, catch_up_days=catch_up)
    except KeyboardInterrupt:
        click.echo("scheduler stopped", err=True)


# --------------------------------------------------------------------------- mismatches


@click.group("mismatches")
def mismatches() -> None:
    """Review and resolve reconciliation mismatches (chênh lệch)."""


def _mm_line(m) -> str:  # noqa: ANN001 - MismatchView
    ref = f" {m.reference}" if m.reference else ""
    sug = f" (gợi ý: {', '.join(m.suggested)})" if m.suggested else ""
    res = f" [{m.resolution} by {m.resolved_by}]" if m.resolution else ""
    return (f"#{m.id:<6} {format_date(m.day)} acc {m.account_id:<3} {m.category:<21} "
            f"{format_vnd(m.amount):>14}{ref}{sug} {m.status}{res}")


@mismatches.command("list")
@click.option("--status", type=click.Choice([*MISMATCH_STATUSES, "all"]), default="open",
              show_default=True)
@click.option("--category", type=click.Choice([c.value for c in Category]), default=None)
@click.option("--account", "account_id", type=int, default=None)
@click.option("--day", "day_text", default=None, help="Day first raised, YYYY-MM-DD.")
@click.option("--limit", type=int, default=200, show_default=True)
@clikit.json_option
@clikit.command
def mismatches_list(fp, status: str, category: str | None, account_id: int | None,  # noqa: ANN001
                    day_text: str | None, limit: int, as_json: bool) -> None:
    """List mismatches (open ones by default)."""
    from reconcile.resolution import Resolutions

    items = Resolutions(fp).list(status=None if status == "all" else status,
                                 category=category, account_id=account_id,
                                 day=clikit.parse_day(day_text, "day"), limit=limit)
    clikit.emit(as_json, {"mismatches": [m.as_dict() for m in items]},
                lambda: "\n".join(_mm_line(m) for m in items) or "no mismatches")


@mismatches.command("show")
@click.argument("mismatch_id", type=int)
@clikit.json_option
@clikit.command
def mismatches_show(fp, mismatch_id: int, as_json: bool) -> None:  # noqa: ANN001
    """One mismatch with its evidence and its resolution history."""
    from reconcile.resolution import Resolutions

    res = Resolutions(fp)
    m = res.get(mismatch_id)
    history = res.history(mismatch_id)

    def human() -> str:
        vi, en = CATEGORY_LABELS[Category(m.category)]
        lines = [_mm_line(m), f"  {vi} / {en}", f"  key: {m.key}"]
        if m.expected_amount is not None:
            lines.append(f"  expected: {format_vnd(m.expected_amount)}")
        lines += [f"  {k}: {v}" for k, v in m.evidence.items()]
        lines += [f"  {clikit.local_time(h['at'])} {h['actor']}: {h['action']} — {h['reason']}"
                  for h in history]
        return "\n".join(lines)

    clikit.emit(as_json, {"mismatch": m.as_dict(), "history": history}, human)


@mismatches.command("resolve")
@click.argument("mismatch_id", type=int)
@click.option("--action", required=True, type=click.Choice(ACTIONS))
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--by", "actor", required=True, help="Who decides (user name).")
@click.option("--reference", default=None, help="With --action link: the reference code.")
@click.option("--batch", default=None,
              help="With --action link, for an ambiguous gateway credit: the settlement "
                   "batch id the line is the credit of.")
@clikit.json_option
@clikit.command
def mismatches_resolve(fp, mismatch_id: int, action: str, reason: str, actor: str,  # noqa: ANN001
                       reference: str | None, batch: str | None, as_json: bool) -> None:
    """Resolve a mismatch: link, refund_due, write_off, carry_over or acknowledge."""
    from reconcile.resolution import Resolutions

    done = Resolutions(fp).resolve(mismatch_id, action, reason=reason, actor=actor,
                                   reference=reference, batch=batch)

    def human() -> str:
        text = _mm_line(done.mismatch)
        return text + (f"\nre-run: {done.rerun.summary()}" if done.rerun else "")

    clikit.emit(as_json, done.as_dict(), human)
    if done.rerun:
        _fail_if_unbalanced([done.rerun])


# --------------------------------------------------------------------------- report


@click.command("report")
@click.option("--day", "day_text", required=True, help="First (or only) day, YYYY-MM-DD.")
@click.option("--through", "through_text", default=None, help="Last day, YYYY-MM-DD.")
@click.option("--unit", default=None, help="A unit code (a province includes its units).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write JSON, CSV and XLSX files into this directory.")
@clikit.json_option
@clikit.command
def report_cmd(fp, day_text: str, through_text: str | None, unit: str | None,  # noqa: ANN001
               out_dir: Path | None, as_json: bool) -> None:
    """Collections and reconciliation per unit: issued, paid, settled; phí / lệ phí split;
    open mismatches by category and age."""
    from reconcile.reports import build_report, to_json, write_all

    start = clikit.parse_day(day_text, "day")
    end = clikit.parse_day(through_text, "through") or start
    report = build_report(fp, start, end, unit=unit)
    written = write_all(report, out_dir) if out_dir else None
    if as_json:
        click.echo(to_json(report))
        return
    click.echo(_report_text(report))
    if written:
        click.echo(f"written: {written['json']}, {written['xlsx']}, "
                   f"{len(written['csv'])} CSV files in {out_dir}")


def _report_text(report) -> str:  # noqa: ANN001 - Report
    lines = [report.title, ""]
    for r in report.summary:
        lines.append(f"{r['unit_name']}: phát hành {r['issued']} "
                     f"({format_vnd(r['issued_amount'])}), đã đối soát {r['settled']} "
                     f"({format_vnd(r['settled_amount'])})")
    for r in report.fees:
        lines.append(f"  {r['fee_code']} {r['kind']}: {format_vnd(r['amount'])} → để lại "
                     f"{format_vnd(r['retained'])}, nộp NSNN {format_vnd(r['budget'])}")
    for r in report.mismatches:
        lines.append(f"  chênh lệch {r['category_label']}: {r['open']} "
                     f"({format_vnd(r['amount'])})")
    for r in report.misrouted:
        lines.append(f"  {r['unit_name']}: {r['open']} khoản ({format_vnd(r['amount'])}) "
                     f"nộp nhầm vào tài khoản của {r['held_by_name']}")
    bad = [r for r in report.runs if r["status"] != "balanced"]
    lines.append(f"{len(report.runs)} account-days reconciled, {len(bad)} not balanced")
    return "\n".join(lines)


commands: list[click.Command] = [reconcile_cmd, scheduler_cmd, mismatches, report_cmd]
