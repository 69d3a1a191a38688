"""Math and trigonometry: SUM, SUMSQ, SUMPRODUCT, MMULT, ABS, EXP, LN, LOG, LOG10, SQRT, TANH, PI, POWER, ROUND,
MOD; and ERF, ERF.PRECISE, NORM.S.DIST, NORMSDIST (a learner's erf GELU)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from math import isfinite, pi

import numpy as np

from ...errors import WorkbookError
from ..operators import binary
from ..store import MAX_BATCH_ELEMENTS, CellRange
from ..values import E_DIV0, E_NUM, E_VALUE, ERR_BASE, NUM, const, error, numbers, per_cell, to_num
from .registry import function
from .stats import collect


@function("SUM")
def sum_(ctx, args):
    x, err = collect(ctx, args)
    return per_cell(np.where(np.isnan(x), 0.0, x).sum(1), err)


def _dot_ranges(ctx, a: CellRange, b: CellRange, mmult: bool):
    """Per-cell dot products of two lazily gathered ranges of k elements each, gathering
    each distinct range once: [B] values, or None if a fallback is needed."""
    ka, kb = a.h * a.w, b.h * b.w
    if ka != kb:
        return None

    def distinct(r: CellRange):
        ctx.store.check_area(r, ctx.where)
        B = max(len(r.r0), len(r.c0))
        r0 = np.broadcast_to(r.r0, (B,))
        c0 = np.broadcast_to(r.c0, (B,))
        key = r0.astype(np.int64) * (1 << 20) + c0
        u, inv = np.unique(key, return_inverse=True)
        rows, cols = u >> 20, u & ((1 << 20) - 1)
        rr = rows[:, None, None] + np.arange(r.h)[None, :, None]
        cc = cols[:, None, None] + np.arange(r.w)[None, None, :]
        rr, cc = np.broadcast_arrays(rr, cc)
        v = ctx.store.gather(r.sheet, rr, cc)
        return v, inv

    va, ia = distinct(a)
    vb, ib = distinct(b)
    for v in (va, vb):
        if mmult and (v.kind != NUM).any():
            return None
        if (v.kind >= ERR_BASE).any():
            return None
    xa = np.where(va.kind == NUM, va.num, 0.0).reshape(len(va.num), -1)
    xb = np.where(vb.kind == NUM, vb.num, 0.0).reshape(len(vb.num), -1)
    if len(ia) == 1 and len(ib) > 1:
        ia = np.broadcast_to(ia, ib.shape)
    if len(ib) == 1 and len(ia) > 1:
        ib = np.broadcast_to(ib, ia.shape)
    B = len(ia)
    if xa.shape[0] * xb.shape[0] <= 4 * B + 1024:
        return (xa @ xb.T)[ia, ib]
    out = np.empty(B)
    step = max(1, MAX_BATCH_ELEMENTS // max(ka, 1))
    for s in range(0, B, step):
        out[s : s + step] = np.einsum("ij,ij->i", xa[ia[s : s + step]], xb[ib[s : s + step]])
    return out


@function("SUMSQ")
def sumsq(ctx, args):
    x, err = collect(ctx, args)
    return per_cell(np.where(np.isnan(x), 0.0, x * x).sum(1), err)


@function("SUMPRODUCT")
def sumproduct(ctx, args):
    args = [a for a in args if a is not None]
    if (
        len(args) == 2
        and all(isinstance(a, CellRange) for a in args)
        and (args[0].h, args[0].w) == (args[1].h, args[1].w)
    ):
        r = _dot_ranges(ctx, args[0], args[1], mmult=False)
        if r is not None:
            return per_cell(r, 0)
    vs = [ctx.val(a) for a in args]
    if any(v.shape[1:] != vs[0].shape[1:] for v in vs):
        return error((1, 1, 1), E_VALUE)
    B = max(v.shape[0] for v in vs)
    prod = np.ones((B,) + vs[0].shape[1:])
    err = np.zeros(B, np.int8)
    for v in vs:
        x = np.where(v.kind == NUM, v.num, 0.0)
        e = np.where(v.kind >= ERR_BASE, v.kind, 0).reshape(v.shape[0], -1)
        first = e[np.arange(e.shape[0]), np.argmax(e != 0, axis=1)]
        err = np.where(err != 0, err, first)
        prod = prod * x
    return per_cell(prod.reshape(B, -1).sum(1), err)


MMULT_MAX_CELLS = 16 * MAX_BATCH_ELEMENTS  # 64 M results (512 MB): a full-size book's largest MMULT is 38.6 M
MMULT_MAX_PRODUCTS = 50_000_000_000  # multiply-adds of one MMULT: about a minute of BLAS on one core


@function("MMULT", 2, 2)
def mmult(ctx, args):
    a, b = args
    if isinstance(a, CellRange) and isinstance(b, CellRange) and a.h == 1 and b.w == 1 and a.w == b.h:
        r = _dot_ranges(ctx, a, b, mmult=True)
        if r is not None:
            return per_cell(r, 0)
    va, vb = ctx.val(a), ctx.val(b)
    if va.shape[2] != vb.shape[1]:
        return error((1, 1, 1), E_VALUE)
    (n, k), m = va.shape[1:], vb.shape[2]
    cells = max(va.shape[0], vb.shape[0]) * n * m
    if cells > MMULT_MAX_CELLS or cells * k > MMULT_MAX_PRODUCTS:  # memory and time bounded, not by what is named
        raise WorkbookError(
            f"{ctx.where}: MMULT of {n:,} x {k:,} by {k:,} x {m:,} cells gives {cells:,} products of {k:,} terms; "
            "refusing it"
        )
    bad_a = (va.kind != NUM).reshape(va.shape[0], -1).any(1)
    bad_b = (vb.kind != NUM).reshape(vb.shape[0], -1).any(1)
    r = np.matmul(np.where(va.kind == NUM, va.num, 0.0), np.where(vb.kind == NUM, vb.num, 0.0))
    bad = (bad_a | bad_b) if len(bad_a) == len(bad_b) or min(len(bad_a), len(bad_b)) == 1 else None
    err = np.broadcast_to(np.where(bad, E_VALUE, 0)[:, None, None], r.shape).astype(np.int8)
    return numbers(r, err)


def _elementwise(fn, domain=None):
    def run(ctx, args):
        x, err = to_num(ctx.val(args[0]))
        if domain is not None:
            err = np.where((err == 0) & ~domain(x), E_NUM, err)
        with np.errstate(all="ignore"):
            r = fn(np.where(err != 0, 1.0, x))
        return numbers(r, err)

    return run


function("ABS", 1, 1)(_elementwise(np.abs))
function("EXP", 1, 1)(_elementwise(np.exp))
function("LN", 1, 1)(_elementwise(np.log, lambda x: x > 0))
function("SQRT", 1, 1)(_elementwise(np.sqrt, lambda x: x >= 0))
function("TANH", 1, 1)(_elementwise(np.tanh))
function("LOG10", 1, 1)(_elementwise(np.log10, lambda x: x > 0))
_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    return _erf(x).astype(np.float64) if np.size(x) else np.asarray(x, np.float64)


@function("LOG", 1, 2)
def log(ctx, args):
    """LOG(x, base): base 10 when left out; x <= 0, base <= 0 or base 1 is #NUM! (#DIV/0! for base 1 in Excel)."""
    x, ex = to_num(ctx.val(args[0]))
    if len(args) == 2 and args[1] is not None:
        b, eb = to_num(ctx.val(args[1]))
    else:
        b, eb = np.full((1, 1, 1), 10.0), np.zeros((1, 1, 1), np.int8)
    x, b, ex, eb = np.broadcast_arrays(x, b, ex, eb)
    err = np.where(ex != 0, ex, np.where(eb != 0, eb, np.where((x <= 0) | (b <= 0), E_NUM, 0)))
    err = np.where((err == 0) & (b == 1), E_DIV0, err)
    with np.errstate(all="ignore"):
        r = np.log(np.where(err != 0, 1.0, x)) / np.log(np.where(err != 0, 2.0, b))
    return numbers(r, err)


@function("ERF", 1, 2)
def erf_(ctx, args):
    """ERF(x) = 2/sqrt(pi) * integral of exp(-t^2) from 0 to x; ERF(a, b) = ERF(b) - ERF(a)."""
    a, ea = to_num(ctx.val(args[0]))
    if len(args) == 1 or args[1] is None:
        return numbers(erf(np.where(ea != 0, 0.0, a)), ea)
    b, eb = to_num(ctx.val(args[1]))
    a, b, ea, eb = np.broadcast_arrays(a, b, ea, eb)
    err = np.where(ea != 0, ea, eb)
    return numbers(erf(np.where(err != 0, 0.0, b)) - erf(np.where(err != 0, 0.0, a)), err)


function("ERF.PRECISE", 1, 1)(_elementwise(erf))


def _norm_cdf(x):
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


@function("NORM.S.DIST", 2, 2)
def norm_s_dist(ctx, args):
    """The standard normal distribution: its CDF when cumulative is TRUE, else its density."""
    z, ez = to_num(ctx.val(args[0]))
    c, ec = to_num(ctx.val(args[1]))
    z, c, ez, ec = np.broadcast_arrays(z, c, ez, ec)
    err = np.where(ez != 0, ez, ec)
    z = np.where(err != 0, 0.0, z)
    with np.errstate(all="ignore"):
        r = np.where(c != 0, _norm_cdf(z), np.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    return numbers(r, err)


function("NORMSDIST", 1, 1)(_elementwise(_norm_cdf))


@function("PI", 0, 0)
def pi_(ctx, args):
    return const(pi)


@function("POWER", 2, 2)
def power(ctx, args):
    return binary("^", ctx.val(args[0]), ctx.val(args[1]))


def _round_one(x: float, d: int) -> float:
    if not isfinite(x):
        return x
    q = Decimal(repr(float(f"{x:.15g}")))
    if q.adjusted() + d >= 15:  # the 15 digits end before that place: nothing to round (1e200 to 0 places)
        return float(q)
    return float(q.quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP)) if d >= -300 else 0.0


@function("ROUND", 2, 2)
def round_(ctx, args):
    x, ex = to_num(ctx.val(args[0]))
    d, ed = to_num(ctx.val(args[1]))
    x, d, ex, ed = np.broadcast_arrays(x, d, ex, ed)
    err = np.where(ex != 0, ex, ed)
    res = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        if err[i] == 0:
            res[i] = _round_one(float(x[i]), int(np.trunc(d[i])))
    return numbers(res, err)


@function("MOD", 2, 2)
def mod(ctx, args):
    """MOD(n, d) = n - d * INT(n / d): the remainder takes the divisor's sign; d = 0 is #DIV/0!."""
    n, en = to_num(ctx.val(args[0]))
    d, ed = to_num(ctx.val(args[1]))
    n, d, en, ed = np.broadcast_arrays(n, d, en, ed)
    err = np.where(en != 0, en, np.where(ed != 0, ed, np.where(d == 0, E_DIV0, 0)))
    with np.errstate(all="ignore"):
        res = n - d * np.floor(n / np.where(d == 0, 1.0, d))
    return numbers(res, err)
