"""Excel's operators on batches of values: arithmetic, ``&`` and comparisons."""

from __future__ import annotations

import numpy as np

from .values import (
    BOOL,
    E_DIV0,
    E_NUM,
    EMPTY,
    NUM,
    TEXT,
    Batch,
    booleans,
    broadcast,
    first_error,
    numbers,
    text_array,
    to_num,
)


def binary(op: str, a: Batch, b: Batch) -> Batch:
    """``a op b`` for op in + - * / ^ & = <> < > <= >=, broadcast as Excel's arrays are."""
    a, b = broadcast(a, b)
    if op in "+-*/^":
        x, ea = to_num(a)
        y, eb = to_num(b)
        err = np.where(ea != 0, ea, eb)
        with np.errstate(all="ignore"):
            if op == "+":
                r = x + y
            elif op == "-":
                r = x - y
            elif op == "*":
                r = x * y
            elif op == "/":
                r = x / np.where(y == 0, 1.0, y)
                err = np.where((err == 0) & (y == 0), E_DIV0, err)
            else:
                r = np.power(x, y)
                err = np.where((err == 0) & (x == 0) & (y < 0), E_DIV0, err)
                err = np.where((err == 0) & (x == 0) & (y == 0), E_NUM, err)
        return numbers(r, err)
    if op == "&":
        err = first_error(a, b)
        txt = text_array(a) + text_array(b)
        kind = np.where(err != 0, err, TEXT).astype(np.int8)
        return Batch(np.zeros(a.shape), kind, txt)
    return _compare(op, a, b)


_CMP = {
    "=": np.equal,
    "<>": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}


def _cmp_key(v: Batch, i, other_kind):
    """Excel's ordering: numbers < text < booleans; empty takes the other side's type."""
    k = v.kind[i]
    if k == EMPTY:
        if other_kind == TEXT:
            return (1, "")
        if other_kind == BOOL:
            return (2, 0.0)
        return (0, 0.0)
    if k == NUM:
        return (0, float(v.num[i]))
    if k == TEXT:
        return (1, v.txt[i].lower())
    return (2, float(v.num[i]))


def _compare(op: str, a: Batch, b: Batch) -> Batch:
    err = first_error(a, b)
    simple = (a.kind <= NUM).all() and (b.kind <= NUM).all()  # kinds are EMPTY 0, NUM 1, then higher codes
    if simple:
        res = _CMP[op](a.num, b.num)
    else:
        res = np.zeros(a.shape, bool)
        for i in np.ndindex(a.shape):
            ka, kb = _cmp_key(a, i, b.kind[i]), _cmp_key(b, i, a.kind[i])
            res[i] = _cmp_tuple(op, ka, kb)
    return booleans(res, err)


def _cmp_tuple(op, x, y) -> bool:
    return {"=": x == y, "<>": x != y, "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]
