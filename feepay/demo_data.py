"""A synthetic demo province: units, users, collection accounts and fee items.

Used by ``feepay demo``, the tests and the benchmarks. Everything here is made up: account
numbers are generated from the seed, names are generic office names, no real person.
Province 40 (Nghệ An) and its first communes come from the official 2025 list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from feepay.units import official_units

if TYPE_CHECKING:
    from feepay.api import FeePay

PROVINCE = "40"
DEPARTMENT = "40-STP"
DEMO_PASSWORD = "demo-password-123"

#: (procedure, fee code, name, kind, amount, retention)
FEES = (
    ("1.001612", "LP-HT-01", "Lệ phí đăng ký khai sinh (quá hạn)", "le_phi", 8_000, 0),
    ("1.001193", "LP-HT-02", "Lệ phí cấp bản sao trích lục hộ tịch", "le_phi", 3_000, 0),
    ("1.004222", "P-CT-01", "Phí chứng thực bản sao từ bản chính", "phi", 2_000, "90%"),
    ("1.004222", "P-CT-02", "Phí chứng thực chữ ký", "phi", 10_000, "90%"),
    ("2.000908", "LP-DD-01", "Lệ phí cấp giấy chứng nhận quyền sử dụng đất", "le_phi",
     100_000, 0),
    ("1.005461", "P-TD-01", "Phí thẩm định hồ sơ cấp phép", "phi", 500_000, "30%"),
)


@dataclass
class DemoProvince:
    province: str
    department: str
    communes: list[str]
    accounts: dict[str, int] = field(default_factory=dict)  # unit code -> active account id
    account_numbers: dict[int, str] = field(default_factory=dict)
    fee_codes: list[str] = field(default_factory=list)
    treasury_user: str = "kbnn.demo"


def _account_number(rng: random.Random) -> str:
    return "9" + "".join(rng.choice("0123456789") for _ in range(11))


def seed(fp: FeePay, seed: int = 0, communes: int = 5,
         effective_from: date = date(2025, 7, 1)) -> DemoProvince:
    """Create the demo province (idempotent only on an empty database)."""
    rng = random.Random(seed)
    fp.units.import_province(PROVINCE)
    fp.units.add(DEPARTMENT, "Sở Tư pháp tỉnh Nghệ An (demo)", "department", PROVINCE)
    _, all_communes = official_units()
    chosen = sorted(c for c, (_n, p) in all_communes.items() if p == PROVINCE)[:communes]
    demo = DemoProvince(PROVINCE, DEPARTMENT, chosen)
    fp.users.add(demo.treasury_user, DEMO_PASSWORD, "treasury",
                 display_name="Kho bạc tỉnh (demo)")
    banks = ["970415", "970405", "970436", "970418", "970422", "970407"]
    for i, unit in enumerate([DEPARTMENT, *chosen]):
        number = _account_number(rng)
        acc = fp.accounts.register(unit, banks[i % len(banks)], number,
                                   f"DON VI THU PHI {i + 1:02d} DEMO", "both",
                                   valid_from=effective_from)
        fp.accounts.verify(acc.id, by=demo.treasury_user)
        fp.accounts.activate(acc.id)
        demo.accounts[unit] = acc.id
        demo.account_numbers[acc.id] = number
    for proc, code, name, kind, amount, retention in FEES:
        fp.fees.add(proc, code, name, kind, amount, retention, effective_from=effective_from)
        demo.fee_codes.append(code)
    return demo
