"""VietQR payloads: the documented worked example byte for byte; CRC right for any input."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feepay import vietqr
from feepay.exceptions import ValidationError

WORKED = ("00020101021238560010A0000007270126000697041501121130001234560208QRIBFTTA"
          "53037045405500005802VN62210817TTHC 250701XA0042630403CC")


def crc_bitwise(data: bytes) -> int:
    """An independent CRC-16/CCITT-FALSE, bit by bit (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_worked_example_byte_for_byte() -> None:
    payload = vietqr.build_payload("970415", "113000123456", 50000, "TTHC 250701XA0042")
    assert payload == WORKED
    assert len(payload) == 127


def test_crc_check_value() -> None:
    assert vietqr.crc16("123456789") == "29B1"


@given(bin_=st.sampled_from(["970415", "970436", "970418", "970405"]),
       account=st.text("0123456789", min_size=6, max_size=19),
       amount=st.one_of(st.none(), st.integers(1, 10**12)),
       memo=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=25))
def test_random_payloads_have_correct_crc_and_roundtrip(bin_, account, amount, memo) -> None:
    p = vietqr.build_payload(bin_, account, amount, memo)
    assert int(p[-4:], 16) == crc_bitwise(p[:-4].encode())
    fields = vietqr.parse_payload(p)
    assert fields["38.00"] == "A000000727"
    assert fields["38.01.00"] == bin_ and fields["38.01.01"] == account
    assert fields["38.02"] == "QRIBFTTA" and fields["53"] == "704" and fields["58"] == "VN"
    assert fields.get("54") == (str(amount) if amount else None)
    assert fields.get("62.08") == (memo or None)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"memo": "Phí hộ tịch"}, "memo"), ({"memo": "X" * 26}, "memo"),
    ({"amount": 0}, "amount"), ({"amount": 10**13}, "amount"),
    ({"account": "12a4"}, "account_number"),
])
def test_refuses_bad_fields(kwargs: dict, field: str) -> None:
    args = {"bank_bin": "970415", "account_number": kwargs.pop("account", "113000123456"),
            "amount": 50000, "memo": "FP"}
    args.update(kwargs)
    with pytest.raises(ValidationError) as exc:
        vietqr.build_payload(**args)
    assert exc.value.field == field


def test_png_decodes_in_an_independent_decoder() -> None:
    """zxing-cpp (the ZXing C++ port) reads our PNG back to the exact payload."""
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    payload = vietqr.build_payload("970436", "0011001234567", 123000, "FP7K3MQ9XA4C")
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(vietqr.render_png(payload))))
    assert [b.text for b in found] == [payload]


def test_svg_is_a_qr_document() -> None:
    svg = vietqr.render_svg(WORKED)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<path" in svg
