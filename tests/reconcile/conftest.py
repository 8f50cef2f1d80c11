"""Fixtures for reconciliation tests: a seeded province and a small 'world' helper that
issues references, records callbacks and imports statement lines through the real
services (no shortcuts into the tables)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import pytest

from feepay.demo_data import DemoProvince, seed
from feepay.models import PaymentEvent, PaymentStatus, SettlementBatch, SettlementFile
from feepay.models import SettlementTxn as SettlementTxnModel
from feepay.money import VN_TZ
from feepay.statements import CREDIT, Line, StatementInfo, StatementStream
from reconcile.runner import Reconciler


def at(day: date, hh: int = 9, mm: int = 0, ss: int = 0) -> datetime:
    """A local (Asia/Ho_Chi_Minh) moment."""
    return datetime.combine(day, time(hh, mm, ss), VN_TZ)


class World:
    """Drive a FeePay database the way production does."""

    def __init__(self, fp, demo: DemoProvince) -> None:  # noqa: ANN001
        self.fp = fp
        self.demo = demo
        self.recon = Reconciler(fp)
        self._n = 0
        self.issued_at = at(date(2025, 11, 25))

    @property
    def account(self) -> int:
        return self.demo.accounts[self.demo.department]

    def ref(self, items: list[str] | None = None, unit: str | None = None):  # noqa: ANN201
        self._n += 1
        return self.fp.references.issue(f"HS-{self._n:05d}", unit or self.demo.department,
                                        items or ["P-CT-02"], now=self.issued_at)

    def callback(self, code: str | None, amount: int, paid_at: datetime, *,
                 provider: str = "sepay", txn: str | None = None, memo: str | None = None,
                 bank_ref: str | None = None):  # noqa: ANN201
        self._n += 1
        return self.fp.payments.record(PaymentEvent(
            provider=provider, provider_txn_id=txn or f"TX{self._n}", reference=code,
            amount=amount, paid_at=paid_at, status=PaymentStatus.SUCCESS,
            memo=memo or code, bank_ref=bank_ref))

    def statement(self, day: date, rows: list[tuple], account: int | None = None):  # noqa: ANN201
        """Import lines: (amount, memo[, value_at[, bank_ref]]) each."""
        lines = [Line(i + 1, day, r[0], CREDIT, r[2] if len(r) > 2 else None,
                      r[3] if len(r) > 3 else None, r[1]) for i, r in enumerate(rows)]
        self._n += 1
        sha = hashlib.sha256(f"{self._n}{rows}".encode()).hexdigest()
        stream = StatementStream(StatementInfo(source=f"sao-ke-{self._n}.csv", format="test"),
                                 iter(lines))
        return self.fp.statements.import_stream(stream, account or self.account,
                                                file_name=f"sao-ke-{self._n}.csv",
                                                file_sha256=sha, file_size=100)

    def settlement(self, batch_id: str, settled_on: date, txns: list[tuple],
                   provider: str = "vnpay", account: int | None = None):  # noqa: ANN201
        """txns: (provider_txn_id, code, gross, fee)."""
        models = tuple(SettlementTxnModel(line_no=i + 1, provider_txn_id=t[0], reference=t[1],
                                          gross=t[2], fee=t[3], net=t[2] - t[3],
                                          batch_id=batch_id)
                       for i, t in enumerate(txns))
        batch = SettlementBatch(batch_id=batch_id, provider=provider, settled_on=settled_on,
                                net_total=sum(t.net for t in models), transactions=models)
        self._n += 1
        return self.fp.statements.import_settlement(
            SettlementFile(source="settle.csv", format="test", batches=(batch,)),
            account or self.account, file_name=f"settle-{self._n}.csv",
            file_sha256=hashlib.sha256(f"s{self._n}".encode()).hexdigest(), file_size=10)

    def run(self, day: date, **kw):  # noqa: ANN201
        (outcome,) = self.recon.run(day, self.account, **kw)
        return outcome


@pytest.fixture
def demo(fp) -> DemoProvince:  # noqa: ANN001
    return seed(fp)


@pytest.fixture
def world(fp, demo) -> World:  # noqa: ANN001
    return World(fp, demo)


@pytest.fixture
def apply_fails(monkeypatch):  # noqa: ANN001, ANN201
    """The apply step dies (a crash after the runs committed); ``.undo()`` heals it."""
    from reconcile import moves

    def boom(conn, now):  # noqa: ANN001, ANN202
        raise RuntimeError("killed between the runs and the apply")
    monkeypatch.setattr(moves, "apply", boom)
    return monkeypatch
