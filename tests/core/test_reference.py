"""Reference codes: check characters catch every single typo and neighbour swap; codes are
found in mangled memos; random memos yield nothing."""

from __future__ import annotations

import doctest
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feepay import reference as ref
from feepay.exceptions import InvalidChecksum, InvalidFormat, InvalidLength

bodies = st.text(alphabet=ref.ALPHABET, min_size=ref.BODY_LENGTH, max_size=ref.BODY_LENGTH)
codes = bodies.map(lambda b: ref.PREFIX + b + ref.calc_check_digits(b))


def test_doctests() -> None:
    assert doctest.testmod(ref).failed == 0


@given(codes)
def test_generated_shape_and_validity(code: str) -> None:
    assert len(code) == ref.LENGTH <= 14
    assert ref.validate(code) == code
    assert ref.validate(ref.format(code).lower()) == code


def test_generate_is_random_and_valid() -> None:
    drawn = {ref.generate() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(ref.is_valid(c) for c in drawn)


@given(codes, st.data())
def test_every_single_substitution_is_rejected(code: str, data: st.DataObject) -> None:
    for pos in range(len(ref.PREFIX), ref.LENGTH):
        for c in ref.ALPHABET:
            if c != code[pos]:
                typo = code[:pos] + c + code[pos + 1:]
                assert not ref.is_valid(typo), typo


@given(codes)
def test_every_adjacent_transposition_is_rejected(code: str) -> None:
    for pos in range(len(ref.PREFIX), ref.LENGTH - 1):
        if code[pos] != code[pos + 1]:
            swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2:]
            with pytest.raises(InvalidChecksum):
                ref.validate(swapped)


def test_error_classes_name_the_problem() -> None:
    good = ref.generate()
    with pytest.raises(InvalidLength):
        ref.validate(good[:-1])
    with pytest.raises(InvalidFormat):
        ref.validate("XX" + good[2:])
    with pytest.raises(InvalidFormat):
        ref.validate(good[:5] + "0" + good[6:])  # 0 is a look-alike, not in the alphabet


def _mangle(code: str, variant: int, before: str, after: str) -> str:
    """How bank apps deliver a memo that started with our code."""
    spaced = " ".join([code[:4], code[4:7], code[7:]])
    forms = [
        code.lower(),
        f"{before}{code}{after}",                      # glued to neighbouring text
        f"{before} {ref.format(code)} {after}",
        f"{before}.{spaced.lower()}-{after}",          # spaces inserted inside the code
        f"CT DEN:123 {code}",                          # truncated right after the code
        f"Nộp phí {code[:6]}-{code[6:]}; cảm ơn",      # diacritics and punctuation
    ]
    return forms[variant % len(forms)]


noise = st.text(alphabet=string.ascii_letters + string.digits + " .-:/", max_size=40)


@given(codes, st.integers(0, 5), noise, noise)
def test_found_in_mangled_memos(code: str, variant: int, before: str, after: str) -> None:
    memo = _mangle(code, variant, before, after)
    assert code in ref.find_in_text(memo)


@given(st.lists(codes, min_size=2, max_size=4, unique=True), noise)
def test_several_codes_in_one_memo(found: list[str], sep: str) -> None:
    memo = (sep + " ").join(c.lower() for c in found)
    assert [c for c in ref.find_in_text(memo) if c in found] == found


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_random_memos_yield_nothing(memo: str) -> None:
    # A random string contains a valid code with negligible probability (prefix + 10
    # alphabet characters + a 1/953 check); hypothesis' text never builds one.
    assert ref.find_in_text(memo) == []


@given(codes, st.integers(2, 11), st.sampled_from(ref.ALPHABET))
@example(code="FPFP322222AW", pos=4, c="2")  # a body containing the prefix
def test_near_miss_is_not_found_but_suggested(code: str, pos: int, c: str) -> None:
    typo = code[:pos] + c + code[pos + 1:]
    if typo == code:
        return
    memo = f"MBVCB.123.{typo}.CT tu 0123"
    assert ref.find_in_text(memo) == []
    assert ref.near_misses(memo) == [typo]


def test_normalize_memo() -> None:
    assert ref.normalize_memo("Đức nộp  phí-hồ sơ") == "DUCNOPPHIHOSO"
