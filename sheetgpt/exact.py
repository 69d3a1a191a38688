"""Deterministic float64 kernels: the same bits on every CPU, BLAS kernel and thread count.

Anything written into a book (its cached values) must not depend on the machine that wrote it.
Two things in numpy do:

- BLAS (``@``, ``np.dot``, ``np.matmul``, ``np.einsum(optimize=True)``) picks its kernel by CPU
  (``OPENBLAS_CORETYPE=Haswell`` and ``SkylakeX`` differ in the last bits) and splits sums by thread;
- numpy's own SIMD loops for transcendental functions (``np.exp``, ``np.tanh``, ``np.log``,
  ``np.power``) have AVX-512 versions that round differently from the scalar C library.

These kernels use only element-wise IEEE operations (``+``, ``*``, ``/``, ``sqrt``: correctly
rounded, so the same everywhere) in a fixed order, and the C library's scalar ``exp``, ``tanh`` and
``log`` (through ``math``). Reductions use numpy's ``sum`` over one axis, whose pairwise order is
fixed by the array's shape; a sum over a whole array of two or more dimensions is ``total`` (numpy's
``.sum()`` of such an array iterates in an order that changed between numpy 1.24 and 2: the Train
tab's gradient norms differed in the last bit).
"""

from __future__ import annotations

import math

import numpy as np

_CHUNK = 4096  # output columns per block of matmul: keeps each block of b contiguous and in cache


def matmul(a, b):  # [..., n, k] @ [..., k, m] -> [..., n, m]
    """``a @ b`` summed over k in the order 0, 1, ..., k-1, one correctly rounded multiply and add
    at a time (no BLAS, no fused multiply-add), broadcasting leading dimensions like ``np.matmul``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("matmul takes arrays of two or more dimensions")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match")
    k, m = a.shape[-1], b.shape[-1]
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = np.zeros((*lead, a.shape[-2], m))
    for m0 in range(0, m, _CHUNK):
        bc = np.ascontiguousarray(b[..., m0 : m0 + _CHUNK])  # [..., k, c]
        acc = out[..., m0 : m0 + _CHUNK]
        for j in range(k):
            acc += a[..., :, j : j + 1] * bc[..., j : j + 1, :]
    return out


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _log(x: float) -> float:
    if x == 0:
        return -math.inf
    if x < 0 or math.isnan(x):
        return math.nan
    return math.log(x)


_EXP = np.frompyfunc(_exp, 1, 1)
_TANH = np.frompyfunc(math.tanh, 1, 1)
_LOG = np.frompyfunc(_log, 1, 1)


def _apply(fn, x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):  # the C library's overflow flag; the results say it (inf)
        return fn(x).astype(np.float64) if x.ndim else np.float64(fn(float(x)))


def exp(x):  # [...] -> [...]
    """e**x element-wise by the C library's scalar exp (inf where it overflows)."""
    return _apply(_EXP, x)


def tanh(x):  # [...] -> [...]
    return _apply(_TANH, x)


def log(x):  # [...] -> [...]
    """Natural log element-wise: -inf at 0, NaN below 0."""
    return _apply(_LOG, x)


def total(x) -> np.float64:  # [...] -> scalar
    """The sum of every element in a fixed order: the column sums (one IEEE add per row, in row
    order), then their correctly rounded sum (``math.fsum``). The same bits for any memory layout,
    BLAS or numpy version."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        return np.float64(math.fsum(x.ravel().tolist()))
    rows = x.reshape(-1, x.shape[-1])
    acc = np.zeros(rows.shape[1])
    for row in rows:
        acc += row
    return np.float64(math.fsum(acc.tolist()))
