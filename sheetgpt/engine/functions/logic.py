"""Logical functions: IF, IFERROR, AND, OR, NOT, TRUE, FALSE."""

from __future__ import annotations

import numpy as np

from ..store import CellRange
from ..values import (
    BOOL,
    E_VALUE,
    EMPTY,
    ERR_BASE,
    NUM,
    TEXT,
    Batch,
    booleans,
    broadcast,
    const,
    empty_to_zero,
    select,
    truth,
)
from .registry import function


@function("IF", 2, 3)
def if_(ctx, args):
    c = ctx.val(args[0])
    a = empty_to_zero(ctx.val(args[1])) if args[1] is not None else const(0.0)
    if len(args) == 3:
        b = empty_to_zero(ctx.val(args[2])) if args[2] is not None else const(0.0)
    else:
        b = const(0.0, BOOL)
    c, a, b = broadcast(c, a, b)
    t, err = truth(c)
    v = select(t, a, b)
    return Batch(np.where(err != 0, 0.0, v.num), np.where(err != 0, err, v.kind).astype(np.int8), v.txt)


@function("IFERROR", 2, 2)
def iferror(ctx, args):
    a = empty_to_zero(ctx.val(args[0]))
    b = empty_to_zero(ctx.val(args[1])) if args[1] is not None else const(0.0)
    a, b = broadcast(a, b)
    return select(a.kind < ERR_BASE, a, b)


def _logic(any_: bool):
    def run(ctx, args):
        vals, errs, counts = [], [], []
        for a in args:
            if a is None:
                continue
            v = ctx.val(ctx.store.clip(a) if isinstance(a, CellRange) else a)
            B = v.shape[0]
            k = v.kind.reshape(B, -1)
            if isinstance(a, CellRange) or v.shape[1:] != (1, 1):
                m = (k == NUM) | (k == BOOL)
                e = np.where(k >= ERR_BASE, k, 0)
            else:
                m = k != EMPTY
                e = np.where(k >= ERR_BASE, k, np.where(k == TEXT, E_VALUE, 0))
            vals.append(np.where(m, v.num.reshape(B, -1) != 0, not any_))
            counts.append(m.sum(1))
            errs.append(e)
        B = max(x.shape[0] for x in vals)
        x = np.concatenate([np.broadcast_to(p, (B, p.shape[1])) for p in vals], 1)
        e = np.concatenate([np.broadcast_to(p, (B, p.shape[1])) for p in errs], 1)
        n = sum(np.broadcast_to(c, (B,)) for c in counts)
        r = x.any(1) if any_ else x.all(1)
        err = e[np.arange(B), np.argmax(e != 0, axis=1)]
        err = np.where((err == 0) & (n == 0), E_VALUE, err).reshape(B, 1, 1)
        return booleans(r.reshape(B, 1, 1), err)

    return run


@function("NOT", 1, 1)
def not_(ctx, args):
    t, err = truth(ctx.val(args[0]))
    return booleans(~t, err)


function("AND")(_logic(any_=False))
function("OR")(_logic(any_=True))


@function("TRUE", 0, 0)
def true_(ctx, args):
    """TRUE(): LibreOffice writes the constant TRUE this way when it saves an .xlsx."""
    return const(1.0, BOOL)


@function("FALSE", 0, 0)
def false_(ctx, args):
    return const(0.0, BOOL)
