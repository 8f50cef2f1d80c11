"""Which stored mismatches keep a callback out of a later day's input (reconcile.loader).

A callback an earlier day's mismatch holds (paired with money it held: paid after
cancellation, a duplicate, …) is not free on later days. The loader asks about the loaded
callbacks by id and checks the rest of the condition on the rows it finds; each part of
that condition is exercised here on real rows, on both databases.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from feepay.money import now_utc
from feepay.storage.tables import UnitRow
from feepay.storage.tables_reconcile import ReconMismatchRow
from reconcile.loader import load_day, member
from tests.reconcile.conftest import at

D1 = date(2025, 12, 1)
D2 = date(2025, 12, 2)


@pytest.mark.parametrize(("status", "other_account", "raised", "category", "held"), [
    ("open", False, D1, "expired_or_cancelled", True),       # an earlier day holds it
    ("resolved", False, D1, "duplicate_payment", True),     # a person's decision holds too
    ("superseded", False, D1, "expired_or_cancelled", False),  # its day let it go
    ("open", True, D1, "expired_or_cancelled", False),       # another account's row
    ("open", False, D2, "expired_or_cancelled", False),      # the day's own (a re-run)
    ("open", False, D1, "paid_no_money", False),             # waits for money, holds none
    ("open", False, D1, "money_no_callback", False),         # a notice, holds no callback
])
def test_a_callback_is_held_only_by_an_earlier_days_live_row_of_its_account(
        fp, world, status: str, other_account: bool, raised: date, category: str,  # noqa: ANN001
        held: bool) -> None:
    a = world.ref()
    event_id = world.callback(a.code, 10_000, at(D1, 9)).event_id
    run_id = world.run(D1 - timedelta(days=1)).run_id   # any run: the row's foreign key
    account = (world.demo.accounts[world.demo.communes[0]] if other_account
               else world.account)
    now = now_utc()
    with fp.db.session() as s:
        s.add(ReconMismatchRow(
            account_id=account, day=raised, key=f"T:{event_id}", category=category,
            amount=10_000, event_id=event_id, reference_code=a.code, first_run_id=run_id,
            run_id=run_id, status=status, created_at=now, updated_at=now))
    with fp.db.session() as s:
        loaded = load_day(s, world.account, D2, world.recon.policy)
    assert (event_id not in {e.id for e in loaded.input.events}) is held


def test_membership_keeps_texts_holding_a_nul_whole(fp) -> None:  # noqa: ANN001
    """SQLite's ``json_each`` ends a text at a NUL: ``member`` binds such values itself,
    so 'T<NUL>a' finds itself, not 'T'. (PostgreSQL text cannot hold a NUL.)"""
    if fp.db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL text cannot hold NUL")
    now = now_utc()
    with fp.db.session() as s:
        s.add_all(UnitRow(code=code, name=f"Đơn vị {i}", kind="other", created_at=now)
                  for i, code in enumerate(["T", "T\x00a", "T\x00b", "U"]))
    with fp.db.session() as s:
        def found(values: list[str]) -> list[str]:
            return sorted(s.scalars(select(UnitRow.code).where(
                member(s, UnitRow.code, values))))

        assert found(["T\x00a"]) == ["T\x00a"]
        assert found(["T\x00b", "U"]) == ["T\x00b", "U"]
        assert found(["U", "T"]) == ["T", "U"]
