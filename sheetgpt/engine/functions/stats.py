"""Statistical functions: AVERAGE, VAR.P/VAR.S/STDEV.P/STDEV.S (and VARP, VAR, STDEVP, STDEV), MAX,
MIN, LARGE, SMALL, COUNT, COUNTA; and how SUM-like functions collect numbers."""

from __future__ import annotations

import numpy as np

from ..store import CellRange
from ..values import E_DIV0, E_NUM, EMPTY, ERR_BASE, NUM, numbers, per_cell, to_num
from .registry import function


def collect(ctx, args):
    """Numbers of SUM-like arguments: ranges/arrays skip text, booleans and empties;
    direct scalars count booleans and numeric text. Returns (x [B, M] with NaN for
    skipped, err [B] first error code or 0)."""
    parts, errs = [], []
    for a in args:
        if a is None:
            continue
        is_range = isinstance(a, CellRange)
        v = ctx.val(ctx.store.clip(a) if is_range else a)
        B = v.shape[0]
        k = v.kind.reshape(B, -1)
        if is_range or v.shape[1:] != (1, 1):
            x = np.where(k == NUM, v.num.reshape(B, -1), np.nan)
            e = k
        else:
            num, e = to_num(v)
            x = np.where(v.kind == EMPTY, np.nan, num).reshape(B, -1)
            e = np.where(e != 0, e, 0).reshape(B, -1)
            x = np.where(e != 0, np.nan, x)
        parts.append(x)
        errs.append(np.where(e >= ERR_BASE, e, 0))
    if not parts:
        return np.full((1, 0), np.nan), np.zeros(1, np.int8)
    B = max(p.shape[0] for p in parts)
    x = np.concatenate([np.broadcast_to(p, (B, p.shape[1])) for p in parts], axis=1)
    e = np.concatenate([np.broadcast_to(p, (B, p.shape[1])) for p in errs], axis=1)
    first = np.argmax(e != 0, axis=1)
    err = e[np.arange(B), first] if e.shape[1] else np.zeros(B, np.int8)
    return x, err.astype(np.int8)


@function("COUNT")
def count(ctx, args):
    x, _ = collect(ctx, args)
    return per_cell((~np.isnan(x)).sum(1).astype(float), 0)


@function("COUNTA")
def counta(ctx, args):
    """Cells and values that are not empty: numbers, texts (empty text too), booleans and errors."""
    total = np.zeros(1)
    for a in args:
        if a is None:
            continue
        v = ctx.val(ctx.store.clip(a) if isinstance(a, CellRange) else a)
        total = total + (v.kind.reshape(v.shape[0], -1) != EMPTY).sum(1)
    return per_cell(total.astype(float), 0)


@function("AVERAGE")
def average(ctx, args):
    x, err = collect(ctx, args)
    n = (~np.isnan(x)).sum(1)
    s = np.where(np.isnan(x), 0.0, x).sum(1)
    err = np.where((err == 0) & (n == 0), E_DIV0, err)
    return per_cell(s / np.maximum(n, 1), err)


def _variance(ddof: int, root: bool):
    """VAR.P (ddof 0) or VAR.S (ddof 1), and their square roots STDEV.P / STDEV.S: two-pass, about
    the mean. Fewer than ddof + 1 numbers is #DIV/0!."""

    def run(ctx, args):
        x, err = collect(ctx, args)
        m = ~np.isnan(x)
        n = m.sum(1)
        mean = np.where(m, x, 0.0).sum(1) / np.maximum(n, 1)
        d = np.where(m, x - mean[:, None], 0.0)
        err = np.where((err == 0) & (n <= ddof), E_DIV0, err)
        v = (d * d).sum(1) / np.maximum(n - ddof, 1)
        return per_cell(np.sqrt(v) if root else v, err)

    return run


for _name, _ddof, _root in (
    ("VAR.P", 0, False),
    ("VARP", 0, False),
    ("VAR.S", 1, False),
    ("VAR", 1, False),
    ("STDEV.P", 0, True),
    ("STDEVP", 0, True),
    ("STDEV.S", 1, True),
    ("STDEV", 1, True),
):
    function(_name)(_variance(_ddof, _root))


def _extreme(reduce, fill):
    def run(ctx, args):
        x, err = collect(ctx, args)
        m = ~np.isnan(x)
        r = reduce(np.where(m, x, fill), axis=1) if x.shape[1] else np.zeros(x.shape[0])
        return per_cell(np.where(m.any(1), r, 0.0), err)

    return run


function("MAX")(_extreme(np.max, -np.inf))
function("MIN")(_extreme(np.min, np.inf))


def _kth(largest: bool):
    def run(ctx, args):
        x, err = collect(ctx, args[:1])
        kv = ctx.val(args[1])
        k, ek = to_num(kv)  # [B?, p, q]
        B = max(x.shape[0], k.shape[0])
        # sorted once per distinct array: one range for every cell and a k per cell (LARGE($E$5:$E$554, C$3))
        # sorts it once
        s = np.broadcast_to(np.sort(np.where(np.isnan(x), np.inf, x), axis=1), (B, x.shape[1]))  # skipped last
        n = np.broadcast_to((~np.isnan(x)).sum(1), (B,))
        err = np.broadcast_to(err, (B,))
        kk = np.floor(np.broadcast_to(k, (B,) + k.shape[1:])).astype(np.int64) if k.size else k
        nb = n.reshape((B,) + (1,) * (kk.ndim - 1))
        bad = (kk < 1) | (kk > nb)
        idx = np.where(bad, 0, np.where(True, kk - 1, 0)) if not largest else np.where(bad, 0, nb - kk)
        flat = idx.reshape(B, -1)
        val = (
            np.take_along_axis(s, np.clip(flat, 0, max(s.shape[1] - 1, 0)), axis=1).reshape(kk.shape)
            if s.shape[1]
            else np.zeros(kk.shape)
        )
        e = np.broadcast_to(err.reshape((B,) + (1,) * (kk.ndim - 1)), kk.shape)
        e = np.where(e != 0, e, np.where(np.broadcast_to(ek, kk.shape) != 0, ek, np.where(bad, E_NUM, 0)))
        return numbers(np.where(e != 0, 0.0, val), e.astype(np.int8))

    return run


function("LARGE", 2, 2)(_kth(largest=True))
function("SMALL", 2, 2)(_kth(largest=False))
