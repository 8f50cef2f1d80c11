"""Units, users, collection accounts and fee items: validation paths, lifecycle, encryption."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from feepay.crypto import Sealer, generate_key, rotate_all
from feepay.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from feepay.storage.tables import AccountRow, AuditRow, UnitRow


def count(fp, table) -> int:  # noqa: ANN001
    with fp.db.session() as s:
        return s.scalar(select(func.count()).select_from(table))


# -- units ------------------------------------------------------------------------------
def test_import_province_loads_official_communes(fp) -> None:  # noqa: ANN001
    res = fp.units.import_province("40")
    assert res["added"] == res["total"] > 100
    assert fp.units.import_province("40")["added"] == 0  # idempotent
    communes = fp.units.list(parent_code="40", kind="commune")
    assert len(communes) == res["total"] - 1
    assert fp.units.get("40").kind == "province"


@pytest.mark.parametrize(("args", "field"), [
    (("99", "X", "province"), "code"),
    (("123", "", "commune"), "code"),
    (("40STP", "Sở", "department"), "code"),
    (("77-STP", "Sở", "department", "40"), "code"),
    (("40-STP", "", "department", "40"), "name"),
    (("40-STP", "Sở", "ward"), "kind"),
])
def test_unit_validation(fp, args, field) -> None:  # noqa: ANN001
    fp.units.import_province("40")
    before = count(fp, UnitRow)
    with pytest.raises(ValidationError) as exc:
        fp.units.add(*args)
    assert exc.value.field == field
    assert count(fp, UnitRow) == before


def test_merged_unit_routes_to_successor(fp, demo) -> None:  # noqa: ANN001
    old, new = demo.communes[0], demo.communes[1]
    fp.accounts.retire(demo.accounts[old], reason="merged")
    fp.units.merge(old, new, reason="Nghị quyết sáp nhập (demo)")
    assert fp.units.resolve(old).code == new
    ref = fp.references.issue("HS-MERGED-1", old, ["LP-HT-01"])
    assert ref.competent_unit == new and ref.account_id == demo.accounts[new]
    with pytest.raises(ValidationError):
        fp.units.merge(new, old)  # would be a cycle


# -- users ------------------------------------------------------------------------------
def test_users_and_passwords(fp) -> None:  # noqa: ANN001
    fp.units.import_province("40")
    u = fp.users.add("staff.a", "correct horse battery", "unit", unit_code="40")
    assert fp.users.authenticate("staff.a", "correct horse battery") == u
    assert fp.users.authenticate("staff.a", "wrong password!!") is None
    assert fp.users.authenticate("nobody", "correct horse battery") is None
    with pytest.raises(ValidationError, match="at least"):
        fp.users.add("staff.b", "short", "unit", unit_code="40")
    with pytest.raises(ValidationError):
        fp.users.add("staff.c", "long enough pw", "unit")
    with pytest.raises(Conflict):
        fp.users.add("staff.a", "correct horse battery", "unit", unit_code="40")


# -- accounts ---------------------------------------------------------------------------
@pytest.fixture
def unit(fp) -> str:  # noqa: ANN001
    fp.units.import_province("40")
    fp.users.add("kb.treasury", "treasury password", "treasury")
    fp.users.add("unit.staff", "unit staff password", "unit", unit_code="40")
    return "40"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"bank_bin": "97041"}, "bank_bin"),
    ({"bank_bin": "123456"}, "bank_bin"),
    ({"account_number": "11300012345a"}, "account_number"),
    ({"account_number": "12345"}, "account_number"),
    ({"account_number": "1" * 20}, "account_number"),
    ({"holder_name": " "}, "holder_name"),
    ({"fee_kinds": "tax"}, "fee_kinds"),
    ({"unit_code": "99999"}, "unit"),
    ({"valid_to": date(2020, 1, 1)}, "valid_to"),
    ({"cutoff": "25:00"}, "cutoff"),
])
def test_account_validation_changes_nothing(fp, unit, kwargs, field) -> None:  # noqa: ANN001
    args = {"unit_code": unit, "bank_bin": "970415", "account_number": "113000123456",
            "holder_name": "UBND TINH DEMO", "fee_kinds": "both",
            "valid_from": date(2025, 7, 1)}
    args.update(kwargs)
    audit_before = count(fp, AuditRow)
    with pytest.raises(ValidationError) as exc:
        fp.accounts.register(**args)
    assert exc.value.field == field
    assert count(fp, AccountRow) == 0
    assert count(fp, AuditRow) == audit_before


def test_account_lifecycle(fp, unit) -> None:  # noqa: ANN001
    a = fp.accounts.register(unit, "970415", "113000123456", "UBND TINH DEMO", "le_phi")
    assert a.state == "pending" and a.number_masked == "••••••••3456"
    with pytest.raises(Conflict):
        fp.accounts.activate(a.id)  # must be verified first
    with pytest.raises(PermissionDenied):
        fp.accounts.verify(a.id, by="unit.staff")
    v = fp.accounts.verify(a.id, by="kb.treasury")
    assert v.state == "verified" and v.verified_by == "kb.treasury"
    assert fp.accounts.activate(a.id).state == "active"
    assert fp.accounts.retire(a.id, reason="closed").state == "retired"
    with pytest.raises(Conflict):
        fp.accounts.activate(a.id)
    with pytest.raises(NotFound):
        fp.accounts.get(999)
    actions = [e["action"] for e in fp.audit.entries("account", str(a.id))]
    assert actions == ["accounts.register", "accounts.verified", "accounts.active",
                       "accounts.retired"]
    assert fp.audit.verify().ok


def test_duplicate_account_refused(fp, unit) -> None:  # noqa: ANN001
    fp.accounts.register(unit, "970415", "113000123456", "UBND TINH DEMO")
    with pytest.raises(Conflict):
        fp.accounts.register(unit, "970415", "113000123456", "UBND TINH DEMO")
    assert fp.accounts.find_by_number("970415", "113000123456").unit_code == unit


def test_account_numbers_encrypted_at_rest(fp, unit, db_url) -> None:  # noqa: ANN001
    number = "113000987654321"
    a = fp.accounts.register(unit, "970436", number, "UBND TINH DEMO")
    assert fp.accounts.full_number(a.id) == number
    if db_url.startswith("sqlite"):
        fp.close()
        raw = b"".join(p.read_bytes() for p in Path(db_url[10:]).parent.glob("feepay.db*"))
        assert number.encode() not in raw
    else:
        with fp.db.engine.connect() as conn:
            dump = conn.execute(text(
                "SELECT string_agg(t::text, '|') FROM collection_accounts t")).scalar()
            audit = conn.execute(text("SELECT string_agg(t::text, '|') FROM audit_log t")).scalar()
        assert number not in dump and number not in audit
        assert "987654321" not in dump


def test_key_rotation(fp, unit) -> None:  # noqa: ANN001
    import os

    from feepay.api import FeePay

    old_key = os.environ["FEEPAY_SECRET_KEYS"]  # the test session's key (tests/conftest.py)

    a = fp.accounts.register(unit, "970436", "113000987654", "UBND TINH DEMO")
    new_key = generate_key()
    rotated = FeePay(fp.db, Sealer([new_key, old_key]), fp.settings)
    counts = rotate_all(rotated)
    assert counts["collection_accounts.number_enc"] == 1
    only_new = FeePay(fp.db, Sealer([new_key]), fp.settings)
    assert only_new.accounts.full_number(a.id) == "113000987654"
    assert only_new.accounts.find_by_number("970436", "113000987654").id == a.id
    with pytest.raises(Exception, match="cannot be decrypted"):
        fp.accounts.full_number(a.id)  # the old key alone no longer opens it


def test_missing_key_is_a_startup_error_in_production(monkeypatch) -> None:  # noqa: ANN001
    from feepay.crypto import load_sealer
    from feepay.exceptions import ConfigurationError

    monkeypatch.delenv("FEEPAY_SECRET_KEYS", raising=False)
    monkeypatch.setenv("FEEPAY_ENV", "production")
    with pytest.raises(ConfigurationError, match="FEEPAY_SECRET_KEYS is not set"):
        load_sealer("sqlite:///x.db")
    monkeypatch.setenv("FEEPAY_SECRET_KEYS", "not-a-key")
    with pytest.raises(ConfigurationError, match="invalid Fernet key"):
        load_sealer("sqlite:///x.db")


def test_dev_key_file_is_created_once_with_a_warning(monkeypatch, tmp_path, caplog) -> None:  # noqa: ANN001
    from feepay.crypto import load_sealer

    monkeypatch.delenv("FEEPAY_SECRET_KEYS", raising=False)
    monkeypatch.delenv("FEEPAY_ENV", raising=False)
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    s1 = load_sealer(url)
    assert "created a development key" in caplog.text
    key_file = tmp_path / "dev.db.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert s1.open(load_sealer(url).seal("x")) == "x"


# -- fee items --------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "field"), [
    ({"procedure_code": "1001612"}, "procedure_code"),
    ({"fee_code": "lệ phí"}, "fee_code"),
    ({"kind": "tax"}, "kind"),
    ({"amount": "12.5OO"}, "amount"),
    ({"amount": 0}, "amount"),
    ({"name": ""}, "name"),
    ({"retention": "90%", "kind": "le_phi"}, "retention"),
    ({"retention": "120%"}, "retention"),
    ({"retention": "abc"}, "retention"),
    ({"effective_to": date(2020, 1, 1)}, "effective_to"),
])
def test_fee_validation(fp, kwargs, field) -> None:  # noqa: ANN001
    args = {"procedure_code": "1.004222", "fee_code": "P-CT-01", "name": "Phí chứng thực",
            "kind": "phi", "amount": "2.000", "retention": "90%",
            "effective_from": date(2025, 7, 1)}
    args.update(kwargs)
    with pytest.raises(ValidationError) as exc:
        fp.fees.add(**args)
    assert exc.value.field == field
    assert fp.fees.list() == []


def test_fee_periods(fp) -> None:  # noqa: ANN001
    f1 = fp.fees.add("1.004222", "P-CT-01", "Phí chứng thực", "phi", "2.000", "87,5%",
                     date(2025, 7, 1))
    assert f1.amount == 2000 and f1.retention_bp == 8750
    with pytest.raises(Conflict):
        fp.fees.add("1.004222", "P-CT-01", "Phí chứng thực", "phi", 3000, "90%",
                    date(2026, 1, 1))
    fp.fees.end("P-CT-01", date(2025, 12, 31))
    fp.fees.add("1.004222", "P-CT-01", "Phí chứng thực", "phi", 3000, "90%", date(2026, 1, 1))
    assert fp.fees.get("P-CT-01", date(2025, 8, 1)).amount == 2000
    assert fp.fees.get("P-CT-01", date(2026, 8, 1)).amount == 3000
    with pytest.raises(NotFound):
        fp.fees.get("P-CT-01", date(2025, 1, 1))
