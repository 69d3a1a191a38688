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


def decompose(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, k): w ~= m / 10**k with |m| < 10**DIGITS, m int64 and k int64 (k may be negative)."""
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
    # Trailing zeros off the mantissa: shorter text, same value.
    for _ in range(DIGITS - 1):
        z = (m % 10 == 0) & (m != 0)
        if not z.any():
            break
        m = np.where(z, m // 10, m)
        k = np.where(z, k - 1, k)
    k = np.where(m == 0, 0, k)
    return m, k


def _scale(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """x * 10**k with exact powers of ten (|k| <= 22) where possible."""
    out = np.empty_like(x)
    pos = k >= 0
    out[pos] = x[pos] * 10.0 ** np.minimum(k[pos], 22) * 10.0 ** np.maximum(k[pos] - 22, 0)
    out[~pos] = x[~pos] / 10.0 ** (-k[~pos])
    return out


def compose(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The float64 value of the decimal m * 10**-k, correctly rounded."""
    m = m.astype(np.float64)
    out = np.empty_like(m)
    small = (k >= 0) & (k <= 22)
    out[small] = m[small] / 10.0 ** k[small]  # exact power of ten: IEEE division rounds correctly
    big = k < 0
    out[big] = m[big] * 10.0 ** (-k[big])  # m * 10**j is exact while it stays below 2**53
    rest = ~(small | big)  # magnitudes below ~1e-14: rare; use Python's correctly rounded parser
    if rest.any():
        out[rest] = [float(f"{int(a)}e-{int(b)}") for a, b in zip(m[rest], k[rest])]
    return out


def stored_values(w: np.ndarray) -> np.ndarray:
    """The float64 numbers a book stores for these weights (what its text reads back as)."""
    w = np.asarray(w)
    m, k = decompose(w.ravel())
    return compose(m, k).reshape(w.shape)


def to_text(m: np.ndarray, k: np.ndarray) -> list[str]:
    """Decimal texts for (m, k), plain notation ('-0.0123', '12.5'); used by small writers and tests."""
    out = []
    for a, b in zip(m.tolist(), k.tolist()):
        s = str(abs(a))
        if b <= 0:
            text = s + "0" * (-b)
        elif b < len(s):
            text = s[:-b] + "." + s[-b:]
        else:
            text = "0." + "0" * (b - len(s)) + s
        out.append("-" + text if a < 0 else text)
    return out
