"""Vietnamese banks by NAPAS BIN (the 6-digit acquirer ID used in VietQR).

A maintained list: BINs and short names as published by NAPAS members and VietQR bank
directories (see ``docs/banks.md``). Add a bank by adding a line.
"""

from __future__ import annotations

from dataclasses import dataclass

from feepay.exceptions import ValidationError


@dataclass(frozen=True)
class Bank:
    """A bank that can receive VietQR transfers."""

    bin: str
    short_name: str
    name: str
    min_account_length: int = 6
    max_account_length: int = 19


BANKS: dict[str, Bank] = {b.bin: b for b in (
    Bank("970436", "Vietcombank", "Ngân hàng TMCP Ngoại thương Việt Nam"),
    Bank("970418", "BIDV", "Ngân hàng TMCP Đầu tư và Phát triển Việt Nam"),
    Bank("970415", "VietinBank", "Ngân hàng TMCP Công thương Việt Nam"),
    Bank("970405", "Agribank", "Ngân hàng Nông nghiệp và Phát triển Nông thôn Việt Nam"),
    Bank("970422", "MB", "Ngân hàng TMCP Quân đội"),
    Bank("970407", "Techcombank", "Ngân hàng TMCP Kỹ thương Việt Nam"),
    Bank("970416", "ACB", "Ngân hàng TMCP Á Châu"),
    Bank("970403", "Sacombank", "Ngân hàng TMCP Sài Gòn Thương Tín"),
    Bank("970423", "TPBank", "Ngân hàng TMCP Tiên Phong"),
    Bank("970432", "VPBank", "Ngân hàng TMCP Việt Nam Thịnh Vượng"),
    Bank("970437", "HDBank", "Ngân hàng TMCP Phát triển TP. Hồ Chí Minh"),
    Bank("970443", "SHB", "Ngân hàng TMCP Sài Gòn – Hà Nội"),
    Bank("970441", "VIB", "Ngân hàng TMCP Quốc tế Việt Nam"),
    Bank("970426", "MSB", "Ngân hàng TMCP Hàng Hải Việt Nam"),
    Bank("970448", "OCB", "Ngân hàng TMCP Phương Đông"),
    Bank("970440", "SeABank", "Ngân hàng TMCP Đông Nam Á"),
    Bank("970431", "Eximbank", "Ngân hàng TMCP Xuất Nhập khẩu Việt Nam"),
    Bank("970449", "LPBank", "Ngân hàng TMCP Lộc Phát Việt Nam"),
    Bank("970419", "NCB", "Ngân hàng TMCP Quốc Dân"),
    Bank("970454", "BVBank", "Ngân hàng TMCP Bản Việt"),
)}


def get_bank(bin_code: str) -> Bank:
    """The bank with this BIN, or ValidationError naming the field ``bank_bin``."""
    if not (isinstance(bin_code, str) and len(bin_code) == 6 and bin_code.isdigit()):
        raise ValidationError(f"'{bin_code}' is not a 6-digit bank BIN", field="bank_bin")
    try:
        return BANKS[bin_code]
    except KeyError:
        raise ValidationError(f"'{bin_code}' is not a known Vietnamese bank BIN "
                              "(see `feepay accounts banks`)", field="bank_bin") from None


def validate_account_number(bank: Bank, number: str) -> str:
    """Digits only, within the bank's length range (VietQR allows at most 19)."""
    number = (number or "").strip()
    if not number.isascii() or not number.isdigit():
        raise ValidationError("an account number has digits only", field="account_number")
    if not bank.min_account_length <= len(number) <= bank.max_account_length:
        raise ValidationError(
            f"a {bank.short_name} account number has {bank.min_account_length}–"
            f"{bank.max_account_length} digits, not {len(number)}", field="account_number")
    return number


def mask(number: str) -> str:
    """``113000123456`` → ``••••••••3456``: what screens and logs show."""
    return "•" * max(len(number) - 4, 0) + number[-4:]
