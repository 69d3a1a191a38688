"""Information functions: ISNUMBER, ISERROR, ISTEXT, ISLOGICAL, N."""

from __future__ import annotations

import numpy as np

from ..store import CellRange
from ..values import BOOL, ERR_BASE, NUM, TEXT, Batch, numbers
from .registry import function


def _is(pred):
    def run(ctx, args):
        v = ctx.val(args[0])
        return Batch(pred(v.kind).astype(float), np.full(v.shape, BOOL, np.int8))

    return run


@function("N", 1, 1)
def n(ctx, args):
    a = args[0]
    v = ctx.val(a)
    if isinstance(a, CellRange):
        v = Batch(v.num[:, :1, :1], v.kind[:, :1, :1])
    num = np.where((v.kind == NUM) | (v.kind == BOOL), v.num, 0.0)
    err = np.where(v.kind >= ERR_BASE, v.kind, 0)
    return numbers(num, err)


function("ISNUMBER", 1, 1)(_is(lambda k: k == NUM))
function("ISERROR", 1, 1)(_is(lambda k: k >= ERR_BASE))
function("ISTEXT", 1, 1)(_is(lambda k: k == TEXT))
function("ISLOGICAL", 1, 1)(_is(lambda k: k == BOOL))
