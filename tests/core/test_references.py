"""Issuing payment references: routing, idempotency, concurrency, cancel, expiry."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from feepay import reference as refcodes
from feepay.exceptions import Conflict, NoCollectionAccount, NotFound, ValidationError
from feepay.models import ReferenceState
from feepay.references import IssueRequest
from feepay.storage.tables import ReferenceItemRow, ReferenceRow
from feepay.vietqr import parse_payload


def n_refs(fp) -> int:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(func.count()).select_from(ReferenceRow))


def test_issue_builds_everything(fp, demo) -> None:  # noqa: ANN001
    ref = fp.references.issue("000.00.40.H-250701-0001", demo.department,
                              ["P-CT-01", "LP-HT-01"], receiving_unit=demo.communes[2])
    assert refcodes.is_valid(ref.code) and ref.memo.startswith(ref.code)
    assert ref.memo.isascii() and len(ref.memo) <= 25
    assert ref.amount_due == 2000 + 8000
    assert ref.account_id == demo.accounts[demo.department]  # competent, not receiving unit
    assert ref.receiving_unit == demo.communes[2]
    assert ref.state is ReferenceState.ISSUED
    assert ref.expires_at - ref.issued_at == timedelta(days=7)
    assert ref.account_masked.endswith(demo.account_numbers[ref.account_id][-4:])
    qr = parse_payload(ref.vietqr)
    assert qr["38.01.01"] == demo.account_numbers[ref.account_id]  # full number only here
    assert qr["54"] == "10000" and qr["62.08"] == ref.code
    assert [i.fee_code for i in ref.items] == ["P-CT-01", "LP-HT-01"]
    assert [i.retention_bp for i in ref.items] == [9000, 0]
    assert fp.references.get(refcodes.format(ref.code).lower()) == ref
    assert ref.qr_png()[:4] == b"\x89PNG" and "<svg" in ref.qr_svg()


def test_issue_again_returns_same_reference(fp, demo) -> None:  # noqa: ANN001
    a = fp.references.issue("HS-1", demo.department, ["P-CT-01", "LP-HT-01"])
    b = fp.references.issue("HS-1", demo.department, ["LP-HT-01", "P-CT-01"])
    c = fp.references.issue("HS-1", demo.department, ["P-CT-01"])  # other items: new ref
    d = fp.references.issue("HS-1", demo.department, ["P-CT-01", "P-CT-01"])  # twice: new
    assert a == b and len({a.code, c.code, d.code}) == 3
    assert d.amount_due == 4000
    assert n_refs(fp) == 3


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"dossier_code": ""}, "dossier_code"),
    ({"dossier_code": "x" * 81}, "dossier_code"),
    ({"competent_unit": "99999"}, "competent_unit"),
    ({"items": []}, "items"),
    ({"items": ["NO-SUCH-FEE"]}, "items"),
    ({"receiving_unit": "00000"}, "receiving_unit"),
])
def test_issue_validation_writes_nothing(fp, demo, kwargs, field) -> None:  # noqa: ANN001
    args = {"dossier_code": "HS-1", "competent_unit": demo.department,
            "items": ["P-CT-01"], "receiving_unit": None}
    args.update(kwargs)
    with pytest.raises(ValidationError) as exc:
        fp.references.issue(**args)
    assert exc.value.field == field
    assert n_refs(fp) == 0


def test_no_account_for_fee_kind(fp, demo) -> None:  # noqa: ANN001
    fp.units.add("40-SXD", "Sở Xây dựng (demo)", "department", "40")
    with pytest.raises(NoCollectionAccount, match="40-SXD"):
        fp.references.issue("HS-2", "40-SXD", ["P-CT-01"])
    acc = fp.accounts.register("40-SXD", "970436", "123456789012", "SO XAY DUNG", "le_phi")
    fp.accounts.verify(acc.id, by=demo.treasury_user)
    fp.accounts.activate(acc.id)
    assert fp.references.issue("HS-2", "40-SXD", ["LP-HT-01"]).account_id == acc.id
    with pytest.raises(NoCollectionAccount):  # phí needs an account accepting phí
        fp.references.issue("HS-3", "40-SXD", ["P-CT-01"])
    assert n_refs(fp) == 1


def test_batch_is_all_or_nothing(fp, demo) -> None:  # noqa: ANN001
    reqs = [IssueRequest(f"HS-B{i}", demo.department, ["P-CT-01"]) for i in range(5)]
    reqs.append(IssueRequest("HS-BAD", demo.department, ["NOPE"]))
    with pytest.raises(ValidationError):
        fp.references.issue_many(reqs)
    assert n_refs(fp) == 0
    assert len({r.code for r in fp.references.issue_many(reqs[:5])}) == 5


def test_cancel_and_reissue(fp, demo) -> None:  # noqa: ANN001
    a = fp.references.issue("HS-C", demo.department, ["P-CT-01"])
    with pytest.raises(ValidationError):
        fp.references.cancel(a.code, "")
    c = fp.references.cancel(a.code, "hồ sơ bị rút", actor="case-system")
    assert c.state is ReferenceState.CANCELLED
    with pytest.raises(Conflict):
        fp.references.cancel(a.code, "again")
    b = fp.references.issue("HS-C", demo.department, ["P-CT-01"])
    assert b.code != a.code and b.state is ReferenceState.ISSUED
    with fp.db.session() as s:
        s.execute(ReferenceRow.__table__.update().where(ReferenceRow.code == b.code)
                  .values(state="paid"))
    with pytest.raises(Conflict, match="paid"):
        fp.references.cancel(b.code, "too late")
    with pytest.raises(NotFound):
        fp.references.cancel(refcodes.generate(), "unknown")
    assert fp.audit.verify().ok


def test_get_errors(fp, demo) -> None:  # noqa: ANN001
    code = fp.references.issue("HS-G", demo.department, ["P-CT-01"]).code
    typo = code[:5] + ("2" if code[5] != "2" else "3") + code[6:]
    with pytest.raises(ValidationError):  # the check catches the typo
        fp.references.get(typo)
    with pytest.raises(NotFound):
        fp.references.get(refcodes.generate())


def test_expiry(fp, demo) -> None:  # noqa: ANN001
    t0 = datetime(2025, 11, 3, 2, 0, tzinfo=UTC)
    fp.references.issue("HS-E", demo.department, ["P-CT-01"], now=t0)
    assert fp.references.expire_due(t0 + timedelta(days=6)) == 0
    assert fp.references.expire_due(t0 + timedelta(days=8)) == 1
    with pytest.raises(ValidationError):
        fp.references.issue("HS-N", demo.department, ["P-CT-01"], now=datetime(2025, 1, 1))


# -- concurrency: many workers issuing for one dossier get one reference ------------------
WORKER = """
import sys
from feepay.api import FeePay
fp = FeePay.open(sys.argv[1], migrate=False)
print(fp.references.issue("HS-RACE", sys.argv[2], ["P-CT-01", "LP-HT-01"]).code)
fp.close()
"""


def _issue_in_processes(url: str, unit: str, n: int) -> set[str]:
    """``n`` separate Python processes issuing at once (real processes, real connections)."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, unit], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL) for _ in range(n)]
    codes = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        codes.add(out.strip())
    return codes


@pytest.mark.postgres
def test_concurrent_issuing_threads_and_processes(fp, demo, db_url) -> None:  # noqa: ANN001
    if not db_url.startswith("postgresql"):
        pytest.skip("the race is proven on PostgreSQL (SQLite serialises writers)")
    with ThreadPoolExecutor(16) as pool:
        codes = set(pool.map(lambda _: fp.references.issue(
            "HS-RACE", demo.department, ["LP-HT-01", "P-CT-01"]).code, range(64)))
    codes |= _issue_in_processes(db_url, demo.department, 8)
    assert len(codes) == 1
    assert n_refs(fp) == 1
    with fp.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ReferenceItemRow)) == 2


def test_concurrent_issuing_sqlite_threads(fp, demo, db_url) -> None:  # noqa: ANN001
    if not db_url.startswith("sqlite"):
        pytest.skip("covered by the PostgreSQL variant above")
    with ThreadPoolExecutor(8) as pool:
        codes = set(pool.map(lambda _: fp.references.issue(
            "HS-RACE", demo.department, ["P-CT-01"]).code, range(32)))
    assert len(codes) == 1 and n_refs(fp) == 1
