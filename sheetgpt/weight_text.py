"""How weights are written as decimal text, and the exact float64 value that text means.

A float32 weight is written with 9 significant digits: enough that the text reads back to
the same float32 (float32 needs at most 9), so the book round-trips the checkpoint exactly.
The reference that checks a book is computed from the float64 value of that text, i.e.
exactly the numbers the workbook stores.

Vectorized: a value is ``m / 10**k`` (or ``m * 10**-k``) with an integer mantissa m of at
most 9 digits; the text is built from m and k, and the float64 value is m divided by an
exact power of ten, which IEEE division rounds correctly, exactly as a decimal parser does.
"""

from __future__ import annotations

import numpy as np

DIGITS = 9


def decompose(w: np.ndarray, shortest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(m, k): w ~= m / 10**k with |m| < 10**DIGITS, m int64 and k int64 (k may be negative).

    ``shortest`` also strips trailing zeros off m (shorter text, the same value).
    """
    x = np.asarray(w, dtype=np.float64)
    a = np.abs(x)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(np.where(a > 0, a, 1.0))).astype(np.int64)
    k = (DIGITS - 1) - e
    m = np.rint(_scale(x, k)).astype(np.int64)
    carry = np.abs(m) >= 10**DIGITS  # log10 rounding at a power of ten, or rounding up to one
    if carry.any():
        k = np.where(carry, k - 1, k)
        m = np.where(carry, np.rint(_scale(x, k)).astype(np.int64), m)
    extreme = (k > 44) | (k < -22)  # below ~1e-36 or above ~1e30: beyond the power table; Python's formatting
    if extreme.any():
        for i in np.flatnonzero(extreme):
            digits, _, exp = f"{x[i]:.{DIGITS - 1}e}".partition("e")
            m[i], k[i] = int(digits.replace(".", "")), (DIGITS - 1) - int(exp)
    k = np.where(m == 0, 0, k)
    if shortest:
        for _ in range(DIGITS - 1):
            z = (m % 10 == 0) & (m != 0)
            if not z.any():
                break
            m = np.where(z, m // 10, m)
            k = np.where(z, k - 1, k)
    return m, k


_POW10 = np.array([10.0**i for i in range(23)])  # exact: 10**22 < 2**53 * 2**22


def _scale(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """x * 10**k, with table lookups of exact powers of ten (|k| <= 44)."""
    up = x * _POW10.take(k, mode="clip") * _POW10.take(k - 22, mode="clip")
    return np.where(k >= 0, up, x / _POW10.take(-k, mode="clip"))


def compose(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The float64 value of the decimal m * 10**-k, correctly rounded."""
    mf = m.astype(np.float64)
    # 0 <= k <= 22: an exact power of ten, and IEEE division rounds correctly, as a parser does.
    # k < 0: m * 10**j is exact while it stays below 2**53 (weights are far smaller).
    out = np.where(k >= 0, mf / _POW10.take(k, mode="clip"), mf * _POW10.take(-k, mode="clip"))
    rest = (k > 22) | (k < -22)  # magnitudes below ~1e-14: rare; Python's correctly rounded parser
    if rest.any():
        out[rest] = [float(f"{int(a)}e{-int(b)}") for a, b in zip(m[rest], k[rest])]
    return out


def stored_values(w: np.ndarray) -> np.ndarray:
    """The float64 numbers a book stores for these weights (what its text reads back as)."""
    w = np.asarray(w)
    m, k = decompose(w.ravel())
    return compose(m, k).reshape(w.shape)
