"""Lookup and reference: INDEX, MATCH, CHOOSE, TRANSPOSE, ROW, COLUMN, ROWS, COLUMNS."""

from __future__ import annotations

import re

import numpy as np

from ...a1 import MAX_COLS, MAX_ROWS
from ...errors import WorkbookError
from ..store import CellRange
from ..values import (
    BOOL,
    E_NA,
    E_REF,
    E_VALUE,
    EMPTY,
    ERR_BASE,
    NUM,
    TEXT,
    Batch,
    broadcast,
    const,
    empty_to_zero,
    error,
    numbers,
    per_cell,
    select,
    to_num,
)
from .registry import function


def _int_arg(ctx, x):
    num, err = to_num(ctx.val(x))
    return np.trunc(num).astype(np.int64), err


@function("INDEX", 2, 3)
def index(ctx, args):
    src = args[0]
    h, w = (src.h, src.w) if isinstance(src, CellRange) else ctx.val(src).shape[1:]
    ri, er = _int_arg(ctx, args[1])
    if len(args) == 3 and args[2] is not None:
        ci, ec = _int_arg(ctx, args[2])
    else:
        ci, ec = np.ones((1, 1, 1), np.int64), np.zeros((1, 1, 1), np.int8)
        if h == 1:  # one index into a single row counts along the row
            ri, ci = ci, ri
            er, ec = ec, er
    if isinstance(src, CellRange) and len(args) == 3 and (_zero(ri) or _zero(ci)):
        return _index_slice(ctx, src, ri, er, ci, ec)
    ri, ci = np.broadcast_arrays(ri, ci)
    err = np.where(er != 0, er, ec)
    bad = (ri < 1) | (ri > h) | (ci < 1) | (ci > w)
    if isinstance(src, CellRange) and ri.shape[1:] == (1, 1) and not err.any() and not bad.any():
        # one cell per formula cell: a reference, as in Excel (ROW(INDEX(...)) reads its position)
        B = max(len(src.r0), len(src.c0), ri.shape[0])
        r0 = np.broadcast_to(src.r0, (B,)) + np.broadcast_to(ri.reshape(-1), (B,)) - 1
        c0 = np.broadcast_to(src.c0, (B,)) + np.broadcast_to(ci.reshape(-1), (B,)) - 1
        return CellRange(src.sheet, r0, c0, 1, 1)
    err = np.where((err == 0) & bad, E_REF, err)
    ri, ci = np.where(bad, 1, ri), np.where(bad, 1, ci)
    if isinstance(src, CellRange):
        shape = np.broadcast_shapes(ri.shape, (len(src.r0), 1, 1), (len(src.c0), 1, 1))
        rows = np.broadcast_to(src.r0[:, None, None] + ri - 1, shape)
        cols = np.broadcast_to(src.c0[:, None, None] + ci - 1, shape)
        v = ctx.store.gather(src.sheet, rows, cols)
    else:
        sv = ctx.val(src)
        B = max(sv.shape[0], ri.shape[0])
        flat = (ri - 1) * w + (ci - 1)
        flat = np.broadcast_to(flat, (B,) + flat.shape[1:]).reshape(B, -1)

        def take(a):
            return np.take_along_axis(np.broadcast_to(a.reshape(a.shape[0], -1), (B, h * w)), flat, 1).reshape(
                (B,) + ri.shape[1:]
            )

        v = Batch(take(sv.num), take(sv.kind), None if sv.txt is None else take(sv.txt))
    err = np.broadcast_to(err, v.shape)
    kind = np.where(err != 0, err, v.kind).astype(np.int8)
    return Batch(np.where(err != 0, 0.0, v.num), kind, v.txt)


def _zero(i) -> bool:
    """An index that is one 0 for every cell (INDEX(range, 1, 0) as typed): a whole row or column.
    (A 0 computed per cell, as in IF(n>=0, INDEX(range, n+1), ""), stays #REF!: both branches of
    IF are evaluated here, and a whole column there would be an array in a plain cell.)"""
    return i.shape == (1, 1, 1) and int(i[0, 0, 0]) == 0


def _index_slice(ctx, src: CellRange, ri, er, ci, ec):
    """INDEX(range, r, 0), INDEX(range, 0, c), INDEX(range, 0, 0): a whole row, column or the range,
    as a reference (so VAR.P(INDEX(embed.h, 1, 0)) reads one row); an index beyond it is #REF!."""
    whole_r, whole_c = _zero(ri), _zero(ci)
    B = max(len(src.r0), len(src.c0), ri.shape[0], ci.shape[0])
    r, c = np.broadcast_to(ri.reshape(-1), (B,)), np.broadcast_to(ci.reshape(-1), (B,))
    bad = ((r < 1) | (r > src.h)) & ~whole_r | ((c < 1) | (c > src.w)) & ~whole_c
    err = np.broadcast_to(np.where(er != 0, er, ec).reshape(-1), (B,))
    r0 = np.broadcast_to(src.r0, (B,)) + (0 if whole_r else np.where(bad, 0, r - 1))
    c0 = np.broadcast_to(src.c0, (B,)) + (0 if whole_c else np.where(bad, 0, c - 1))
    out = CellRange(src.sheet, r0, c0, src.h if whole_r else 1, src.w if whole_c else 1)
    if not bad.any() and not err.any():
        return out
    code = np.where(err != 0, err, np.where(bad, E_REF, 0))[:, None, None]
    if (code != 0).all():
        return Batch(np.zeros(code.shape), code.astype(np.int8))
    v = ctx.val(out)
    code = np.broadcast_to(code, v.shape)
    return Batch(np.where(code != 0, 0.0, v.num), np.where(code != 0, code, v.kind).astype(np.int8), v.txt)


_WILD = re.compile(r"~([*?~])|([*?])|([^*?~]+)")


def _wild_re(pat: str):
    out = []
    for m in _WILD.finditer(pat):
        if m.group(1):
            out.append(re.escape(m.group(1)))
        elif m.group(2):
            out.append(".*" if m.group(2) == "*" else ".")
        else:
            out.append(re.escape(m.group(3)))
    return re.compile("".join(out), re.S | re.I)


@function("MATCH", 2, 3)
def match(ctx, args):
    x = ctx.val(args[0])
    lookup = args[1]
    if isinstance(lookup, CellRange) and (lookup.h == 1 or lookup.w == 1):
        lookup = ctx.store.clip(lookup)  # a row or a column: its empty tail changes no position
    rng = ctx.val(lookup)
    mt = 1
    if len(args) == 3 and args[2] is not None:
        t, _ = to_num(ctx.val(args[2]))
        mt = int(np.sign(t.ravel()[0]))
    if rng.shape[1] != 1 and rng.shape[2] != 1:
        return error((1, 1, 1), E_NA)
    B = max(x.shape[0], rng.shape[0])
    x = Batch(*[None if a is None else np.broadcast_to(a, (B,) + x.shape[1:]) for a in (x.num, x.kind, x.txt)])
    if mt == 0 and (x.kind == NUM).all() and (rng.kind <= NUM).all():
        return _match_numbers(x, rng)
    n = rng.shape[1] * rng.shape[2]
    out = np.zeros((B,) + x.shape[1:])
    err = np.zeros((B,) + x.shape[1:], np.int8)
    cache = {}
    for b in range(B):
        rb = b if rng.shape[0] > 1 else 0
        if rb not in cache:
            kinds = rng.kind[rb].reshape(-1)
            nums = rng.num[rb].reshape(-1)
            txts = rng.txt[rb].reshape(-1) if rng.txt is not None else None
            exact = {}
            for i in range(n - 1, -1, -1):
                k = kinds[i]
                if k == NUM:
                    exact[(0, float(nums[i]))] = i
                elif k == TEXT:
                    exact[(1, txts[i].lower())] = i
                elif k == BOOL:
                    exact[(2, float(nums[i]))] = i
            cache[rb] = (exact, kinds, nums, txts)
        exact, kinds, nums, txts = cache[rb]
        for j in np.ndindex(x.shape[1:]):
            i = (b,) + j
            k = x.kind[i]
            if k >= ERR_BASE:
                err[i] = k
                continue
            if k == TEXT:
                key = (1, x.txt[i].lower())
            elif k == BOOL:
                key = (2, float(x.num[i]))
            else:
                key = (0, float(x.num[i]))
            pos = None
            if mt == 0:
                if key[0] == 1 and any(ch in key[1] for ch in "*?~"):
                    pat = _wild_re(x.txt[i])
                    for p in range(n):
                        if kinds[p] == TEXT and pat.fullmatch(txts[p]):
                            pos = p
                            break
                else:
                    pos = exact.get(key)
            else:
                # approximate: data assumed sorted (ascending for 1, descending for -1)
                best = None
                for p in range(n):
                    kp = kinds[p]
                    if kp in (EMPTY,) or kp >= ERR_BASE:
                        continue
                    kkey = (
                        0 if kp == NUM else 1 if kp == TEXT else 2,
                        float(nums[p]) if kp != TEXT else txts[p].lower(),
                    )
                    if kkey[0] != key[0]:
                        continue
                    if (mt == 1 and kkey[1] <= key[1]) or (mt == -1 and kkey[1] >= key[1]):
                        best = p
                    else:
                        break
                pos = best
            if pos is None:
                err[i] = E_NA
            else:
                out[i] = pos + 1
    return numbers(out, err)


def _match_numbers(x: Batch, rng: Batch) -> Batch:
    """Exact MATCH of numbers in numbers and empty cells: the first equal one, else #N/A."""
    n = rng.shape[1] * rng.shape[2]
    if rng.shape[0] > 1 and x.num[0].size * n <= 4096:
        # a small range per cell (e.g. one row of slots): compare every element at once
        nums = np.where(rng.kind == NUM, rng.num, np.nan).reshape(rng.shape[0], 1, n)
        eq = nums == x.num.reshape(x.shape[0], -1, 1)  # [B, x elements, n]
        hit = eq.any(axis=2)
        at = np.where(hit, eq.argmax(axis=2) + 1, 0).reshape(x.shape).astype(float)
        return Batch(at, np.where(hit.reshape(x.shape), NUM, E_NA).astype(np.int8))
    out = np.zeros(x.shape)
    found = np.zeros(x.shape, bool)
    for b in range(x.shape[0] if rng.shape[0] > 1 else 1):
        nums = np.where(rng.kind[b].reshape(-1) == NUM, rng.num[b].reshape(-1), np.nan)
        order = np.argsort(nums, kind="stable")  # equal numbers keep their order; NaN (empty) last
        ranked = nums[order]
        want = x.num[b] if rng.shape[0] > 1 else x.num
        at = np.minimum(np.searchsorted(ranked, want), len(ranked) - 1)
        hit = ranked[at] == want
        if rng.shape[0] > 1:
            out[b], found[b] = np.where(hit, order[at] + 1, 0), hit
        else:
            out, found = np.where(hit, order[at] + 1, 0).astype(float), hit
    return Batch(out, np.where(found, NUM, E_NA).astype(np.int8))


@function("TRANSPOSE", 1, 1)
def transpose(ctx, args):
    v = ctx.val(args[0])
    return Batch(
        v.num.transpose(0, 2, 1), v.kind.transpose(0, 2, 1), None if v.txt is None else v.txt.transpose(0, 2, 1)
    )


def _rowcol(is_row: bool):
    def run(ctx, args):
        if not args or args[0] is None:
            v = (ctx.rows if is_row else ctx.cols) + 1.0
            return per_cell(v, 0)
        a = args[0]
        if not isinstance(a, CellRange):
            raise WorkbookError(f"{ctx.where}: {'ROW' if is_row else 'COLUMN'} needs a reference")
        if a.h == MAX_ROWS or a.w == MAX_COLS:  # a whole column or row: as far as its values are read
            a = ctx.store.clip(a)
        start = (a.r0 if is_row else a.c0).astype(float)
        n = a.h if is_row else a.w
        if n == 1:
            return per_cell(start + 1, 0)
        off = np.arange(n, dtype=float)
        num = start[:, None] + 1 + off[None, :]
        num = num[:, :, None] if is_row else num[:, None, :]
        return Batch(num, np.full(num.shape, NUM, np.int8))

    return run


def _dims(is_rows: bool):
    def run(ctx, args):
        a = args[0]
        if isinstance(a, CellRange):
            return const(float(a.h if is_rows else a.w))
        v = ctx.val(a)
        return const(float(v.shape[1] if is_rows else v.shape[2]))

    return run


@function("CHOOSE", 2, 255)
def choose(ctx, args):
    idx, err = to_num(ctx.val(args[0]))
    idx = np.trunc(idx).astype(np.int64)
    opts = [empty_to_zero(ctx.val(a)) if a is not None else const(0.0) for a in args[1:]]
    allv = broadcast(Batch(idx.astype(float), np.where(err != 0, err, NUM).astype(np.int8)), *opts)
    iv, opts = allv[0], allv[1:]
    i = iv.num.astype(np.int64)
    bad = (i < 1) | (i > len(opts))
    out = Batch(np.zeros(iv.shape), np.full(iv.shape, E_VALUE, np.int8))
    for n, o in enumerate(opts, 1):
        out = select(i == n, o, out)
    e = np.where(iv.kind >= ERR_BASE, iv.kind, np.where(bad, E_VALUE, 0))
    return Batch(np.where(e != 0, 0.0, out.num), np.where(e != 0, e, out.kind).astype(np.int8), out.txt)


function("ROW", 0, 1)(_rowcol(is_row=True))
function("COLUMN", 0, 1)(_rowcol(is_row=False))
function("ROWS", 1, 1)(_dims(is_rows=True))
function("COLUMNS", 1, 1)(_dims(is_rows=False))
