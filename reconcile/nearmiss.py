"""Near-miss codes: which real codes a mistyped one could be.

:func:`feepay.reference.near_misses` finds code-shaped strings whose check characters fail
— almost always one mistyped or swapped character (the check catches every such typo).
:func:`corrections` lists the *valid* codes one substitution or one swap of neighbours
away. The engine offers the ones that exist as suggestions; it never matches them on its
own.

How it stays cheap: a code body (8 + 2 check characters, base 31) is valid when its value
``N ≡ 0 (mod 953)``. Replacing the character at position ``i`` (weight ``w_i = 31^(9-i)``)
by ``s`` changes ``N`` by ``(s - v_i)·w_i``, so the only substitution that can repair a
remainder ``r`` is ``s ≡ v_i - r·w_i⁻¹ (mod 953)`` — at most one per position, and only if
it is a digit of the alphabet. Ten positions and nine swaps: ~20 integer operations.
"""

from __future__ import annotations

from feepay import reference as codes

_ALPHABET = codes.ALPHABET
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_BASE = len(_ALPHABET)
_M = codes.MODULUS
_PREFIX = codes.PREFIX
_TAIL = codes.BODY_LENGTH + codes.CHECK_LENGTH
_WEIGHTS = [pow(_BASE, _TAIL - 1 - i, _M) for i in range(_TAIL)]
_INVERSES = [pow(w, -1, _M) for w in _WEIGHTS]


def corrections(candidate: str) -> list[str]:
    """Valid codes one substitution or one adjacent transposition away from ``candidate``.

    >>> body = "7K3MQ9XA"
    >>> good = "FP" + body + codes.calc_check_digits(body)
    >>> typo = good[:5] + ("2" if good[5] != "2" else "3") + good[6:]
    >>> good in corrections(typo)
    True
    >>> swapped = good[:4] + good[5] + good[4] + good[6:]
    >>> good in corrections(swapped)
    True
    """
    tail = candidate[len(_PREFIX):]
    if len(tail) != _TAIL or any(c not in _VALUE for c in tail):
        return []
    values = [_VALUE[c] for c in tail]
    rem = sum(v * w for v, w in zip(values, _WEIGHTS, strict=True)) % _M
    if rem == 0:
        return [candidate]
    out: set[str] = set()
    for i, v in enumerate(values):
        s = (v - rem * _INVERSES[i]) % _M
        if s < _BASE and s != v:
            out.add(_PREFIX + tail[:i] + _ALPHABET[s] + tail[i + 1:])
        if i + 1 < _TAIL:
            nxt = values[i + 1]
            if nxt != v and (rem + (nxt - v) * (_WEIGHTS[i] - _WEIGHTS[i + 1])) % _M == 0:
                out.add(_PREFIX + tail[:i] + tail[i + 1] + tail[i] + tail[i + 2:])
    return sorted(out)
