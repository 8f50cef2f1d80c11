"""VietQR: the NAPAS profile of the EMVCo merchant-presented QR, for bank transfers.

The payload is a string of TLV items (2-digit id, 2-digit length, value). For a transfer
to an account (service ``QRIBFTTA``)::

    00 02 01                      payload format
    01 02 12                      12 = dynamic (one payment), 11 = static
    38 .. [00 A000000727 | 01 [00 BIN | 01 account] | 02 QRIBFTTA]
    53 03 704                     VND
    54 .. amount                  integer, no separators (VND has no decimals)
    58 02 VN
    62 .. [08 purpose]            the transfer memo, ASCII, ≤ 25 characters
    63 04 CRC                     CRC-16/CCITT-FALSE over everything before, incl. "6304"

More information: NAPAS QR Switching specification v1.5.2; ``docs/vietqr.md``.

>>> build_payload("970415", "113000123456", 50000, "TTHC 250701XA0042")[-8:]
'630403CC'
"""

from __future__ import annotations

import binascii
import io

from feepay.exceptions import ValidationError

NAPAS_GUID = "A000000727"
SERVICE_ACCOUNT = "QRIBFTTA"
MAX_MEMO = 25


def tlv(tag: str, value: str) -> str:
    """One EMVCo item: id, 2-digit length, value (ASCII, so characters = bytes)."""
    if len(value) > 99:
        raise ValidationError(f"QR field {tag} is longer than 99 characters", field=tag)
    return f"{tag}{len(value):02d}{value}"


def crc16(data: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) as 4 uppercase hex digits."""
    return f"{binascii.crc_hqx(data.encode('ascii'), 0xFFFF):04X}"


def build_payload(bank_bin: str, account_number: str, amount: int | None, memo: str,
                  *, dynamic: bool = True) -> str:
    """The VietQR string a bank app scans to pre-fill a transfer.

    Raises:
        ValidationError: a non-ASCII or over-long memo, a bad amount or account.
    """
    if not memo.isascii() or len(memo) > MAX_MEMO:
        raise ValidationError(f"the QR memo must be ASCII and at most {MAX_MEMO} characters",
                              field="memo")
    if amount is not None and (not isinstance(amount, int) or amount <= 0
                               or len(str(amount)) > 13):
        raise ValidationError("the QR amount must be a positive whole number of đồng",
                              field="amount")
    if not (account_number.isdigit() and len(account_number) <= 19):
        raise ValidationError("the account number must be at most 19 digits",
                              field="account_number")
    beneficiary = tlv("00", bank_bin) + tlv("01", account_number)
    merchant = tlv("00", NAPAS_GUID) + tlv("01", beneficiary) + tlv("02", SERVICE_ACCOUNT)
    body = (tlv("00", "01") + tlv("01", "12" if dynamic else "11") + tlv("38", merchant)
            + tlv("53", "704") + (tlv("54", str(amount)) if amount is not None else "")
            + tlv("58", "VN") + (tlv("62", tlv("08", memo)) if memo else "") + "6304")
    return body + crc16(body)


def parse_payload(payload: str) -> dict[str, str]:
    """Read a payload back into ``{tag: value}`` (nested tags as ``38.01.00``); checks CRC."""
    if len(payload) < 8 or crc16(payload[:-4]) != payload[-4:].upper():
        raise ValidationError("the QR payload's CRC does not match", field="payload")
    out: dict[str, str] = {}
    _walk(payload[:-8], "", out)
    out["63"] = payload[-4:]
    return out


def _walk(data: str, prefix: str, out: dict[str, str]) -> None:
    i = 0
    while i < len(data):
        tag, length = data[i:i + 2], int(data[i + 2:i + 4])
        value = data[i + 4:i + 4 + length]
        key = prefix + tag
        out[key] = value
        if key in ("38", "38.01", "62"):
            _walk(value, key + ".", out)
        i += 4 + length


def render_svg(payload: str, scale: int = 4) -> str:
    """The QR as an SVG document (segno, error correction M)."""
    import segno

    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="svg", scale=scale)
    return buf.getvalue().decode("utf-8")


def render_png(payload: str, scale: int = 6) -> bytes:
    """The QR as PNG bytes (segno, error correction M)."""
    import segno

    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=scale)
    return buf.getvalue()
