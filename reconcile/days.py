"""Business days: which local day a moment belongs to, given an account's cut-off.

Statement lines carry the bank's posting day. Callbacks carry a moment; its business day
is the local (Asia/Ho_Chi_Minh) date, moved to the next day at or after the account's
cut-off — banks post late-evening transfers the next day (payOS FAQ: 22:00–05:00).
An account's stored cut-off ``23:59`` (the default) or ``24:00`` means "midnight":
the whole local day, 00:00:00–23:59:59.999, is one business day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from feepay.money import VN_TZ, local_day

_MIDNIGHT = {"23:59", "24:00", "00:00", ""}


def parse_cutoff(text: str | None) -> time | None:
    """``"22:00"`` → ``time(22, 0)``; ``"23:59"``/``"24:00"``/``None`` → ``None`` (midnight)."""
    if text is None or text.strip() in _MIDNIGHT:
        return None
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


def business_day(moment: datetime, cutoff: time | None = None) -> date:
    """The business day of an aware ``moment`` for an account with ``cutoff``."""
    return local_day(moment, cutoff)


def local_date(moment: datetime) -> date:
    """The local calendar date of an aware moment."""
    return moment.astimezone(VN_TZ).date()


def days_between(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
