"""Payment reference codes (mã thanh toán): short, unguessable, self-checking.

A code is ``FP`` + 8 random characters + 2 check characters, 12 characters in all, over
the 31-character alphabet ``23456789ABCDEFGHJKMNPQRSTUVWXYZ`` (digits and capitals
without the look-alikes 0/O, 1/I/L). Printed for people in groups: ``FP 7K3M Q9XA 4C``;
written into bank memos compact: ``FP7K3MQ9XA4C``.

Check characters (ISO 7064 style, modulus 953): the code body read as a base-31 number
``N`` gets two base-31 check digits ``c`` such that ``N·31² + c ≡ 0 (mod 953)``. Because
953 is a prime larger than the alphabet and does not divide 31 or 30, **every single
substitution and every swap of two neighbouring characters changes the remainder**, so
one typo is always detected; a random string passes with probability 1/953.

Bank apps upper-case memos, strip diacritics, drop spaces and punctuation, insert spaces
inside words and glue text around the code. :func:`find_in_text` undoes all of that:
it normalises the memo (:func:`normalize_memo`) and returns every valid code in it.

The API follows python-stdnum: :func:`compact`, :func:`validate`, :func:`is_valid`,
:func:`format`, :func:`calc_check_digits`, :func:`generate`, :func:`find_in_text`.

>>> code = "FP" + "7K3MQ9XA" + calc_check_digits("7K3MQ9XA")
>>> validate(format(code)) == code
True
>>> find_in_text("MBVCB.123.CK " + format(code).lower() + " NGUYEN VAN A") == [code]
True
"""

from __future__ import annotations

import random
import re
import secrets
import unicodedata

from feepay.exceptions import InvalidChecksum, InvalidFormat, InvalidLength

PREFIX = "FP"
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
BODY_LENGTH = 8
CHECK_LENGTH = 2
LENGTH = len(PREFIX) + BODY_LENGTH + CHECK_LENGTH
MODULUS = 953  # prime, > len(ALPHABET), < len(ALPHABET) ** CHECK_LENGTH, divides neither 31 nor 30

_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_BASE = len(ALPHABET)
_SEPARATORS = re.compile(r"[\s\-.]")
_DELETE = bytes(b for b in range(256) if not (48 <= b <= 57 or 65 <= b <= 90))
#: ``bytes.translate(None, NON_ALNUM)`` keeps only A–Z and 0–9: the ASCII fast path of
#: :func:`normalize_memo` (``memo.upper().encode().translate(None, NON_ALNUM)``).
NON_ALNUM = _DELETE
_ALPHABET_B = ALPHABET.encode()
_PREFIX_B = PREFIX.encode()
_TRANSLIT = str.maketrans({"đ": "d", "Đ": "D"})


_TO_BASE31 = str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstu")
_TO_BASE31_B = bytes.maketrans(ALPHABET.encode(), b"0123456789abcdefghijklmnopqrstu")
# a code-shaped string at every position (lookahead: overlapping candidates too)
_CANDIDATE = re.compile(b"(?=" + re.escape(_PREFIX_B) + b"([" + re.escape(_ALPHABET_B) + b"]{"
                        + str(BODY_LENGTH + CHECK_LENGTH).encode() + b"}))")


def _number(chars: str) -> int:
    """The code body read as a base-31 number (int() does the work in C)."""
    return int(chars.translate(_TO_BASE31), _BASE)


def calc_check_digits(body: str) -> str:
    """The two check characters for a code body (without the prefix)."""
    check = (-_number(body) * _BASE * _BASE) % MODULUS
    return ALPHABET[check // _BASE] + ALPHABET[check % _BASE]


def compact(code: str) -> str:
    """Upper-case and remove spaces, dashes and dots: the canonical form."""
    return _SEPARATORS.sub("", code).upper()


def validate(code: str) -> str:
    """Return the canonical code or raise InvalidLength / InvalidFormat / InvalidChecksum."""
    code = compact(code)
    if len(code) != LENGTH:
        raise InvalidLength(f"a payment reference has {LENGTH} characters, not {len(code)}",
                            field="reference")
    if not code.startswith(PREFIX) or any(c not in _VALUE for c in code[len(PREFIX):]):
        raise InvalidFormat(
            f"a payment reference starts with {PREFIX} and uses only {ALPHABET}",
            field="reference")
    if _number(code[len(PREFIX):]) % MODULUS != 0:
        raise InvalidChecksum("the check characters do not match: check for a typo",
                              field="reference")
    return code


def is_valid(code: str) -> bool:
    """True when ``code`` is a well-formed reference with matching check characters."""
    try:
        return bool(validate(code))
    except ValueError:
        return False


def format(code: str) -> str:  # noqa: A001 - stdnum's name
    """Group for people: ``FP 7K3M Q9XA 4C``."""
    code = compact(code)
    return " ".join([code[:2], code[2:6], code[6:10], code[10:]])


def generate(rng: random.Random | None = None) -> str:
    """A new random code (cryptographically random body, not sequential or guessable).

    ``rng`` (a seeded ``random.Random``) is for demos and tests that must repeat exactly.
    """
    choice = rng.choice if rng is not None else secrets.choice
    body = "".join(choice(ALPHABET) for _ in range(BODY_LENGTH))
    return PREFIX + body + calc_check_digits(body)


def normalize_memo(memo: str) -> str:
    """Upper-case, strip Vietnamese diacritics, drop everything but A–Z and 0–9."""
    if not memo.isascii():
        memo = unicodedata.normalize("NFKD", memo.translate(_TRANSLIT))
        memo = memo.encode("ascii", "ignore").decode("ascii")
    return memo.upper().encode("ascii").translate(None, _DELETE).decode("ascii")


def _scan(text: bytes) -> tuple[list[str], list[str]]:
    """Valid codes and near misses in a normalised memo, left to right, never overlapping.

    A valid code consumes its characters (text after it is scanned afresh); a code-shaped
    string whose check fails is a near miss unless it overlaps a valid code or an earlier
    near miss.
    """
    valid: list[str] = []
    near: list[tuple[str, int]] = []
    start = text.find(_PREFIX_B)
    while start != -1:
        end = start + LENGTH
        body = text[start + len(_PREFIX_B):end]
        if len(body) == LENGTH - len(_PREFIX_B) and not body.translate(None, _ALPHABET_B):
            code = PREFIX + body.decode("ascii")
            if _checks(body):
                while near and near[-1][1] > start:
                    near.pop()
                if code not in valid:
                    valid.append(code)
                start = text.find(_PREFIX_B, end)
                continue
            if not near or near[-1][1] <= start:
                near.append((code, end))
        start = text.find(_PREFIX_B, start + 1)
    return valid, [c for c, _ in near]


def _checks(body: bytes) -> bool:
    return int(body.translate(_TO_BASE31_B), _BASE) % MODULUS == 0


def _normalized_bytes(memo: str) -> bytes:
    if not memo.isascii():
        return normalize_memo(memo).encode("ascii")
    return memo.upper().encode("ascii").translate(None, _DELETE)


def find_in_text(memo: str) -> list[str]:
    """Every valid reference in a memo, in order of appearance, without repeats.

    Works on mangled memos: lower case, diacritics, spaces inserted inside the code,
    punctuation, and text glued before or after the code.
    """
    text = _normalized_bytes(memo)
    if _PREFIX_B not in text:
        return []
    return _scan(text)[0]


def codes_in_normalized(norm: str | bytes) -> list[str]:
    """Every valid reference in an already normalised memo (:func:`normalize_memo`'s output).

    The same answer as ``find_in_text(norm)`` without normalising a second time: bulk
    importers normalise each memo once, store it, and scan it with this.
    """
    text = norm.encode("ascii") if isinstance(norm, str) else norm
    bodies = _CANDIDATE.findall(text)
    if len(bodies) < 2:  # the usual memo: one code-shaped string or none
        if bodies and int(bodies[0].translate(_TO_BASE31_B), _BASE) % MODULUS == 0:
            return [PREFIX + bodies[0].decode("ascii")]
        return []
    found: list[str] = []
    end = -1
    for match in _CANDIDATE.finditer(text):  # every code-shaped start, overlapping
        start = match.start()
        if start < end:  # inside the valid code found before: consumed (as in _scan)
            continue
        body = match.group(1)
        if int(body.translate(_TO_BASE31_B), _BASE) % MODULUS == 0:
            code = PREFIX + body.decode("ascii")
            if code not in found:
                found.append(code)
            end = start + LENGTH
    return found


def near_misses(memo: str) -> list[str]:
    """Code-shaped strings in a memo whose check fails: likely typos of a real code.

    The reconciliation engine uses these to suggest a reference, never to auto-match.
    """
    return _scan(_normalized_bytes(memo))[1]
