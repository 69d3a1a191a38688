"""Text functions: EXACT, LEN, MID."""

from __future__ import annotations

import numpy as np

from ..values import E_VALUE, ERR_BASE, NUM, TEXT, Batch, booleans, broadcast, first_error, numbers, text_array, to_num
from .registry import function


@function("EXACT", 2, 2)
def exact(ctx, args):
    a, b = broadcast(ctx.val(args[0]), ctx.val(args[1]))
    return booleans(text_array(a) == text_array(b), first_error(a, b))


@function("LEN", 1, 1)
def len_(ctx, args):
    v = ctx.val(args[0])
    res = np.vectorize(len, otypes=[float])(text_array(v)) if v.num.size else np.zeros(v.shape)
    err = np.where(v.kind >= ERR_BASE, v.kind, 0)
    return numbers(res, err)


@function("MID", 3, 3)
def mid(ctx, args):
    """MID(text, start, count): characters start..start+count-1 (1-based); #VALUE! if start < 1 or count < 0."""
    t = ctx.val(args[0])
    s, es = to_num(ctx.val(args[1]))
    n, en = to_num(ctx.val(args[2]))
    t, sv, nv = broadcast(
        t, Batch(s, np.where(es != 0, es, NUM).astype(np.int8)), Batch(n, np.where(en != 0, en, NUM).astype(np.int8))
    )
    err = first_error(t, sv, nv)
    txt, texts = np.empty(t.shape, object), text_array(t)
    for i in np.ndindex(t.shape):
        if err[i]:
            continue
        start, count = int(np.trunc(sv.num[i])), int(np.trunc(nv.num[i]))
        if start < 1 or count < 0:
            err[i] = E_VALUE
            continue
        txt[i] = texts[i][start - 1 : start - 1 + count]
    return Batch(np.zeros(t.shape), np.where(err != 0, err, TEXT).astype(np.int8), txt)
