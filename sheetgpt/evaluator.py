"""Recompute every formula of a workbook from its text, vectorized with numpy.

Formula cells are grouped by (sheet, canonical R1C1 text): cells in a group compute the
same formula up to relative references, so each group is evaluated once, batched over
its N cells. Inside a batch every value has shape [B, rows, cols] with B = N (differs
per cell) or 1 (the same for every cell, broadcast); a plain cell's value is [B, 1, 1].
A CSE array formula is its own unit (B = 1) written over its whole range.

Values carry three parallel arrays: ``num`` (float64), ``kind`` (int8: empty, number,
text, boolean, or an error code) and ``txt`` (object array of strings, or None when no
text is present). Semantics follow Excel's for the supported functions (see FUNCS).

Groups are ordered by the bounding boxes they read and write. Groups whose boxes form a
cycle (including a group reading its own cells, e.g. ``=B4+1`` filled down column B)
are resolved cell by cell with exact ranges and evaluated level by level; a true
circular reference raises WorkbookError naming a cell on the cycle.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from .errors import WorkbookError
from .formula import MAX_COLS, MAX_ROWS, parse_r1c1, shift_formula, to_r1c1
from .xlsx_reader import Book, cell_name

EMPTY, NUM, TEXT, BOOL = 0, 1, 2, 3
ERR_BASE = 10
ERRORS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")
ERR = {e: ERR_BASE + i for i, e in enumerate(ERRORS)}
E_DIV0, E_VALUE, E_REF, E_NUM, E_NA = ERR["#DIV/0!"], ERR["#VALUE!"], ERR["#REF!"], ERR["#NUM!"], ERR["#N/A"]

MAX_BATCH_ELEMENTS = 4_000_000  # cells x range area materialised at once


def quote_sheet(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "'" + name.replace("'", "''") + "'"


def where_name(sheet: str, r: int, c: int) -> str:
    return f"{quote_sheet(sheet)}!{cell_name(r, c)}"


# ----------------------------------------------------------------------------- values


class V:
    """A batch of values: num/kind (and txt, object or None) of shape [B, h, w]."""

    __slots__ = ("num", "kind", "txt")

    def __init__(self, num, kind, txt=None):
        self.num = num
        self.kind = kind
        self.txt = txt

    @property
    def shape(self):
        return self.kind.shape


def _const(num=0.0, kind=NUM, txt=None) -> V:
    t = None
    if txt is not None:
        t = np.empty((1, 1, 1), object)
        t[0, 0, 0] = txt
    return V(np.full((1, 1, 1), num, float), np.full((1, 1, 1), kind, np.int8), t)


def _err(shape, code) -> V:
    return V(np.zeros(shape), np.full(shape, code, np.int8))


@dataclass
class Ref:
    """A lazy reference: top-left r0/c0 (int arrays [B], B may be 1) and size h x w."""

    sheet: str
    r0: np.ndarray
    c0: np.ndarray
    h: int
    w: int


# ----------------------------------------------------------------------------- store


TEXT_ARRAY_CELLS = 1 << 22  # sheets up to this size keep texts in an object array (8 bytes a cell)


class Store:
    """Cell values of every sheet: num float64, kind int8, and the texts of the cells whose
    kind is TEXT (None until a sheet holds one). A sheet's texts are an object array, read by
    slicing, or a {(row, col): text} dict on sheets larger than TEXT_ARRAY_CELLS (a
    full-size Embeddings tab is 50,257 x 770). Either may keep a text under a cell that no
    longer is one; the cell's kind decides."""

    def __init__(self, book: Book):
        self.num: dict[str, np.ndarray] = {}
        self.kind: dict[str, np.ndarray] = {}
        self.txt: dict[str, np.ndarray | dict | None] = {}
        self.lower = {n.lower(): n for n in book.sheets}
        self.shared: set[str] = set()
        for name, sh in book.sheets.items():
            grid = getattr(sh, "full_grid", None)
            if grid is not None and not sh.formulas and not (sh.strings or sh.booleans or sh.errors):
                # a weight tab: every cell a number, nothing written; use the reader's grid
                self.num[name], self.kind[name] = grid, np.full(grid.shape, NUM, np.int8)
                self.txt[name] = None
                self.shared.add(name)
                continue
            R, C = sh.dims
            arrays = sh.formulas.arrays if hasattr(sh.formulas, "arrays") else sh.formulas
            for _, _, _, rng in arrays:
                if rng:
                    R, C = max(R, rng[2] + 1), max(C, rng[3] + 1)
            num = np.zeros((R, C))
            kind = np.zeros((R, C), np.int8)
            r, c, v = sh.numbers
            num[r, c] = v
            kind[r, c] = NUM
            for (r, c), s in sh.strings.items():
                kind[r, c] = TEXT
            for (r, c), b in sh.booleans.items():
                kind[r, c] = BOOL
                num[r, c] = float(b)
            for (r, c), e in sh.errors.items():
                kind[r, c] = ERR.get(e.upper(), E_VALUE)
            self.num[name], self.kind[name] = num, kind
            self.txt[name] = None
            if sh.strings:
                t = self._new_texts(name)
                for (r, c), s in sh.strings.items():
                    t[r, c] = s

    def _new_texts(self, sheet: str) -> np.ndarray | dict:
        R, C = self.kind[sheet].shape
        t = self.txt[sheet] = np.empty((R, C), object) if R * C <= TEXT_ARRAY_CELLS else {}
        return t

    def sheet(self, name: str) -> str | None:
        return self.lower.get(name.lower())

    def gather(self, sheet: str, rows: np.ndarray, cols: np.ndarray) -> V:
        """Values at integer index arrays rows/cols (same shape); outside the sheet = empty."""
        N, K = self.num[sheet], self.kind[sheet]
        R, C = K.shape
        inside = (rows >= 0) & (rows < R) & (cols >= 0) & (cols < C)
        if inside.all():
            num, kind = N[rows, cols], K[rows, cols]
        else:
            rr, cc = np.where(inside, rows, 0), np.where(inside, cols, 0)
            if R == 0 or C == 0:
                num, kind = np.zeros(rows.shape), np.zeros(rows.shape, np.int8)
            else:
                num = np.where(inside, N[rr, cc], 0.0)
                kind = np.where(inside, K[rr, cc], EMPTY).astype(np.int8)
        return V(num, kind, self._texts(sheet, kind, rows, cols))

    def block(self, sheet: str, r0: int, c0: int, h: int, w: int) -> V:
        N, K = self.num[sheet], self.kind[sheet]
        R, C = K.shape
        if r0 + h <= R and c0 + w <= C:
            num = N[r0 : r0 + h, c0 : c0 + w][None]
            kind = K[r0 : r0 + h, c0 : c0 + w][None]
        else:
            num = np.zeros((1, h, w))
            kind = np.zeros((1, h, w), np.int8)
            hh, ww = max(0, min(h, R - r0)), max(0, min(w, C - c0))
            num[0, :hh, :ww] = N[r0 : r0 + hh, c0 : c0 + ww]
            kind[0, :hh, :ww] = K[r0 : r0 + hh, c0 : c0 + ww]
        txt = None
        T = self.txt[sheet]
        if isinstance(T, np.ndarray) and (kind == TEXT).any():
            txt = np.empty((1, h, w), object)
            txt[0, : max(0, min(h, R - r0)), : max(0, min(w, C - c0))] = T[r0 : r0 + h, c0 : c0 + w]
        elif T is not None and (kind == TEXT).any():
            rows = np.arange(r0, r0 + h)[None, :, None] + np.zeros((1, 1, w), int)
            cols = np.arange(c0, c0 + w)[None, None, :] + np.zeros((1, h, 1), int)
            txt = self._texts(sheet, kind, rows, cols)
        return V(num, kind, txt)

    def _texts(self, sheet, kind, rows, cols):
        """The texts at rows/cols where kind is TEXT (elsewhere anything)."""
        T = self.txt[sheet]
        m = kind == TEXT
        if T is None or not m.any():
            return None
        if isinstance(T, dict):
            t = np.empty(kind.shape, object)
            rr, cc = np.broadcast_to(rows, kind.shape)[m], np.broadcast_to(cols, kind.shape)[m]
            t[m] = [T.get(rc, "") for rc in zip(rr.tolist(), cc.tolist())]
            return t
        R, C = T.shape
        inside = (rows >= 0) & (rows < R) & (cols >= 0) & (cols < C)
        return T[np.where(inside, rows, 0), np.where(inside, cols, 0)]

    def write(self, sheet: str, rows: np.ndarray, cols: np.ndarray, v: V) -> None:
        self.num[sheet][rows, cols] = np.where(v.kind == NUM, v.num, np.where(v.kind == BOOL, v.num, 0.0))
        self.kind[sheet][rows, cols] = v.kind
        if v.txt is not None:
            m = v.kind == TEXT
            if m.any():
                T = self.txt[sheet] if self.txt[sheet] is not None else self._new_texts(sheet)
                rows, cols = np.broadcast_to(rows, v.kind.shape)[m], np.broadcast_to(cols, v.kind.shape)[m]
                if isinstance(T, dict):
                    T.update(zip(zip(rows.tolist(), cols.tolist()), v.txt[m].tolist()))
                else:
                    T[rows, cols] = v.txt[m]

    def texts(self, sheet: str) -> dict:
        """{(row, col): text} of the sheet's TEXT cells."""
        T, K = self.txt[sheet], self.kind[sheet]
        if T is None:
            return {}
        if isinstance(T, dict):
            return {rc: s for rc, s in T.items() if K[rc] == TEXT}
        tr, tc = np.nonzero(K == TEXT)
        return dict(zip(zip(tr.tolist(), tc.tolist()), T[tr, tc].tolist()))


# ----------------------------------------------------------------------------- coercions


def _bcast(*vs: V) -> list[V]:
    """Excel array broadcasting: equal sizes, or size-1 rows/cols; beyond -> #N/A."""
    shapes = [v.shape for v in vs]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        shape = tuple(max(s[i] for s in shapes) for i in range(3))
        out = []
        for v in vs:
            tgt = tuple(shape[i] if v.shape[i] != 1 else 1 for i in range(3))
            if tgt != v.shape:
                num = np.zeros(tgt)
                kind = np.full(tgt, E_NA, np.int8)
                sl = tuple(slice(0, n) for n in v.shape)
                num[sl], kind[sl] = v.num, v.kind
                txt = None
                if v.txt is not None:
                    txt = np.empty(tgt, object)
                    txt[sl] = v.txt
                v = V(num, kind, txt)
            out.append(v)
        vs = out
        shape = np.broadcast_shapes(*[v.shape for v in vs])
    res = []
    for v in vs:
        if v.shape != shape:
            v = V(
                np.broadcast_to(v.num, shape),
                np.broadcast_to(v.kind, shape),
                None if v.txt is None else np.broadcast_to(v.txt, shape),
            )
        res.append(v)
    return res


def _parse_num(s: str):
    try:
        return float(s.strip())
    except ValueError:
        return None


def _to_num(v: V) -> tuple[np.ndarray, np.ndarray]:
    """Arithmetic coercion: empty->0, bool->0/1, numeric text->number, other text->#VALUE!.
    Returns (num, err) where err is 0 or an error code."""
    k = v.kind
    num = v.num
    err = np.where(k >= ERR_BASE, k, 0).astype(np.int8)
    m = k == TEXT
    if m.any():
        num = np.array(num, dtype=float, copy=True)
        err = np.array(err)
        idx = np.nonzero(m)
        for i in zip(*idx):
            x = _parse_num(v.txt[i]) if v.txt is not None else None
            if x is None:
                err[i] = E_VALUE
            else:
                num[i] = x
    if (k == EMPTY).any():
        num = np.where(k == EMPTY, 0.0, num)
    return num, err


def _num_text(x: float) -> str:
    """A number as Excel's General format turns it into text (15 significant digits)."""
    if x == 0:
        return "0"
    s = f"{x:.15g}"
    if "e" in s:
        mant, exp = s.split("e")
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        e = int(exp)
        s = f"{mant}E{'+' if e >= 0 else '-'}{abs(e):02d}"
    elif "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _text_array(v: V) -> np.ndarray:
    """Every element as text (object array): numbers as Excel shows them in general
    format, booleans TRUE/FALSE, empty and errors ""."""
    out = np.full(v.shape, "", object)
    text = v.kind == TEXT
    if text.any():
        out[text] = v.txt[text]
    num = v.kind == NUM
    if num.any():
        out[num] = [_num_text(float(x)) for x in v.num[num]]
    boolean = v.kind == BOOL
    if boolean.any():
        out[boolean] = np.where(v.num[boolean] != 0, "TRUE", "FALSE")
    return out


def _result(num, err, shape=None) -> V:
    bad = ~np.isfinite(num)
    if bad.any():
        err = np.where((err == 0) & bad, E_NUM, err)
    kind = np.where(err != 0, err, NUM).astype(np.int8)
    return V(np.where(err != 0, 0.0, num), kind)


# ----------------------------------------------------------------------------- context


class Ctx:
    def __init__(self, ev: Evaluator, sheet: str, rows: np.ndarray, cols: np.ndarray, where: str):
        self.ev = ev
        self.store = ev.store
        self.sheet = sheet
        self.rows = rows  # [B]
        self.cols = cols
        self.where = where

    # -- references
    def _sheet_of(self, name):
        if name is None:
            return self.sheet
        s = self.store.sheet(name)
        if s is None:
            raise WorkbookError(f"{self.where}: reference to a sheet that does not exist: {name!r}")
        return s

    def ref(self, node) -> Ref:
        if node[0] == "ref":
            _, sh, r, ra, c, ca = node
            r1, r1a, c1, c1a = r, ra, c, ca
        else:
            _, sh, r, ra, c, ca, r1, r1a, c1, c1a = node
        sheet = self._sheet_of(sh)
        R0 = np.array([r]) if ra else self.rows + r
        R1 = np.array([r1]) if r1a else self.rows + r1
        C0 = np.array([c]) if ca else self.cols + c
        C1 = np.array([c1]) if c1a else self.cols + c1
        lo_r, hi_r = np.minimum(R0, R1), np.maximum(R0, R1)
        lo_c, hi_c = np.minimum(C0, C1), np.maximum(C0, C1)
        h, w = hi_r - lo_r, hi_c - lo_c
        if (h != h[0]).any() or (w != w[0]).any():  # pragma: no cover - split upstream
            raise WorkbookError(f"{self.where}: internal: range size varies inside a batch")
        if (lo_r < 0).any() or (lo_c < 0).any():
            raise WorkbookError(f"{self.where}: reference off the sheet")
        return Ref(sheet, lo_r, lo_c, int(h[0]) + 1, int(w[0]) + 1)

    def val(self, x) -> V:
        if isinstance(x, V):
            return x
        if x is None:
            return V(np.zeros((1, 1, 1)), np.zeros((1, 1, 1), np.int8))
        if len(x.r0) == 1 and len(x.c0) == 1:
            return self.store.block(x.sheet, int(x.r0[0]), int(x.c0[0]), x.h, x.w)
        B = max(len(x.r0), len(x.c0))
        r0 = np.broadcast_to(x.r0, (B,))
        c0 = np.broadcast_to(x.c0, (B,))
        rows = r0[:, None, None] + np.arange(x.h)[None, :, None]
        cols = c0[:, None, None] + np.arange(x.w)[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        return self.store.gather(x.sheet, rows, cols)

    # -- evaluation
    def eval(self, node):
        t = node[0]
        if t == "num":
            return _const(node[1])
        if t == "str":
            return _const(np.nan, TEXT, node[1])
        if t == "bool":
            return _const(float(node[1]), BOOL)
        if t == "err":
            return _const(0.0, ERR[node[1]])
        if t == "missing":
            return None
        if t in ("ref", "range"):
            return self.ref(node)
        if t == "neg":
            num, err = _to_num(self.val(self.eval(node[1])))
            return _result(-num, err)
        if t == "pct":
            num, err = _to_num(self.val(self.eval(node[1])))
            return _result(num / 100.0, err)
        if t == "bin":
            return _binary(node[1], self.val(self.eval(node[2])), self.val(self.eval(node[3])))
        if t == "call":
            fn = FUNCS.get(node[1])
            if fn is None:
                raise WorkbookError(f"{self.where}: unsupported function {node[1]}")
            return fn(self, [self.eval(a) for a in node[2]])
        raise WorkbookError(f"{self.where}: cannot evaluate {t}")


def _binary(op: str, a: V, b: V) -> V:
    a, b = _bcast(a, b)
    if op in "+-*/^":
        x, ea = _to_num(a)
        y, eb = _to_num(b)
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
        return _result(r, err)
    if op == "&":
        shape = a.shape
        err = np.where(a.kind >= ERR_BASE, a.kind, np.where(b.kind >= ERR_BASE, b.kind, 0))
        txt = _text_array(a) + _text_array(b)
        kind = np.where(err != 0, err, TEXT).astype(np.int8)
        return V(np.zeros(shape), kind, txt)
    return _compare(op, a, b)


_CMP = {
    "=": np.equal,
    "<>": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}


def _cmp_key(v: V, i, other_kind):
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


def _compare(op: str, a: V, b: V) -> V:
    err = np.where(a.kind >= ERR_BASE, a.kind, np.where(b.kind >= ERR_BASE, b.kind, 0))
    simple = (a.kind <= NUM).all() and (b.kind <= NUM).all()  # kinds are EMPTY 0, NUM 1, then higher codes
    if simple:
        res = _CMP[op](a.num, b.num)
    else:
        res = np.zeros(a.shape, bool)
        for i in np.ndindex(a.shape):
            ka, kb = _cmp_key(a, i, b.kind[i]), _cmp_key(b, i, a.kind[i])
            res[i] = _cmp_tuple(op, ka, kb)
    kind = np.where(err != 0, err, BOOL).astype(np.int8)
    return V(np.where(err != 0, 0.0, res.astype(float)), kind)


def _cmp_tuple(op, x, y) -> bool:
    return {"=": x == y, "<>": x != y, "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]


# ----------------------------------------------------------------------------- functions


def _scalar_b(ctx: Ctx, *vs) -> int:
    return max([len(ctx.rows)] + [v.shape[0] for v in vs])


def _collect(ctx: Ctx, args, *, count_errors=True):
    """Numbers of SUM-like arguments: ranges/arrays skip text, booleans and empties;
    direct scalars count booleans and numeric text. Returns (x [B, M] with NaN for
    skipped, err [B] first error code or 0)."""
    parts, errs = [], []
    for a in args:
        if a is None:
            continue
        is_range = isinstance(a, Ref)
        v = ctx.val(a)
        B = v.shape[0]
        k = v.kind.reshape(B, -1)
        if is_range or v.shape[1:] != (1, 1):
            x = np.where(k == NUM, v.num.reshape(B, -1), np.nan)
            e = k
        else:
            num, e = _to_num(v)
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


def _out(num, err) -> V:
    num = np.asarray(num, float).reshape(-1, 1, 1)
    err = np.asarray(err).reshape(-1, 1, 1)
    num, err = np.broadcast_arrays(num, err)
    return _result(np.where(err != 0, 0.0, num), err)


def f_sum(ctx, args):
    x, err = _collect(ctx, args)
    return _out(np.where(np.isnan(x), 0.0, x).sum(1), err)


def f_count(ctx, args):
    x, _ = _collect(ctx, args)
    return _out((~np.isnan(x)).sum(1).astype(float), 0)


def f_average(ctx, args):
    x, err = _collect(ctx, args)
    n = (~np.isnan(x)).sum(1)
    s = np.where(np.isnan(x), 0.0, x).sum(1)
    err = np.where((err == 0) & (n == 0), E_DIV0, err)
    return _out(s / np.maximum(n, 1), err)


def f_varp(ctx, args):
    x, err = _collect(ctx, args)
    m = ~np.isnan(x)
    n = m.sum(1)
    mean = np.where(m, x, 0.0).sum(1) / np.maximum(n, 1)
    d = np.where(m, x - mean[:, None], 0.0)
    err = np.where((err == 0) & (n == 0), E_DIV0, err)
    return _out((d * d).sum(1) / np.maximum(n, 1), err)


def _maxmin(fn, fill):
    def f(ctx, args):
        x, err = _collect(ctx, args)
        m = ~np.isnan(x)
        r = fn(np.where(m, x, fill), axis=1) if x.shape[1] else np.zeros(x.shape[0])
        return _out(np.where(m.any(1), r, 0.0), err)

    return f


def _kth(largest: bool):
    def f(ctx, args):
        if len(args) != 2:
            raise WorkbookError(f"{ctx.where}: {'LARGE' if largest else 'SMALL'} takes 2 arguments")
        x, err = _collect(ctx, args[:1])
        kv = ctx.val(args[1])
        k, ek = _to_num(kv)  # [B?, p, q]
        B = max(x.shape[0], k.shape[0])
        x = np.broadcast_to(x, (B, x.shape[1]))
        s = np.sort(np.where(np.isnan(x), np.inf, x), axis=1)  # ascending, skipped last
        n = (~np.isnan(x)).sum(1)
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
        return _result(np.where(e != 0, 0.0, val), e.astype(np.int8))

    return f


def _elementwise(fn, domain=None):
    def f(ctx, args):
        if len(args) != 1:
            raise WorkbookError(f"{ctx.where}: function takes 1 argument")
        x, err = _to_num(ctx.val(args[0]))
        if domain is not None:
            err = np.where((err == 0) & ~domain(x), E_NUM, err)
        with np.errstate(all="ignore"):
            r = fn(np.where(err != 0, 1.0, x))
        return _result(r, err)

    return f


def f_power(ctx, args):
    return _binary("^", ctx.val(args[0]), ctx.val(args[1]))


def f_pi(ctx, args):
    return _const(math.pi)


def _dot_refs(ctx, a: Ref, b: Ref, mmult: bool):
    """Per-cell dot products of two lazily gathered ranges of k elements each, gathering
    each distinct range once: [B] values, or None if a fallback is needed."""
    ka, kb = a.h * a.w, b.h * b.w
    if ka != kb:
        return None

    def distinct(r: Ref):
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


def f_sumproduct(ctx, args):
    args = [a for a in args if a is not None]
    if len(args) == 2 and all(isinstance(a, Ref) for a in args) and (args[0].h, args[0].w) == (args[1].h, args[1].w):
        r = _dot_refs(ctx, args[0], args[1], mmult=False)
        if r is not None:
            return _out(r, 0)
    vs = [ctx.val(a) for a in args]
    if any(v.shape[1:] != vs[0].shape[1:] for v in vs):
        return _err((1, 1, 1), E_VALUE)
    B = max(v.shape[0] for v in vs)
    prod = np.ones((B,) + vs[0].shape[1:])
    err = np.zeros(B, np.int8)
    for v in vs:
        x = np.where(v.kind == NUM, v.num, 0.0)
        e = np.where(v.kind >= ERR_BASE, v.kind, 0).reshape(v.shape[0], -1)
        first = e[np.arange(e.shape[0]), np.argmax(e != 0, axis=1)]
        err = np.where(err != 0, err, first)
        prod = prod * x
    return _out(prod.reshape(B, -1).sum(1), err)


def f_mmult(ctx, args):
    if len(args) != 2:
        raise WorkbookError(f"{ctx.where}: MMULT takes 2 arguments")
    a, b = args
    if isinstance(a, Ref) and isinstance(b, Ref) and a.h == 1 and b.w == 1 and a.w == b.h:
        r = _dot_refs(ctx, a, b, mmult=True)
        if r is not None:
            return _out(r, 0)
    va, vb = ctx.val(a), ctx.val(b)
    if va.shape[2] != vb.shape[1]:
        return _err((1, 1, 1), E_VALUE)
    bad_a = (va.kind != NUM).reshape(va.shape[0], -1).any(1)
    bad_b = (vb.kind != NUM).reshape(vb.shape[0], -1).any(1)
    r = np.matmul(np.where(va.kind == NUM, va.num, 0.0), np.where(vb.kind == NUM, vb.num, 0.0))
    bad = (bad_a | bad_b) if len(bad_a) == len(bad_b) or min(len(bad_a), len(bad_b)) == 1 else None
    err = np.broadcast_to(np.where(bad, E_VALUE, 0)[:, None, None], r.shape).astype(np.int8)
    return _result(r, err)


def f_transpose(ctx, args):
    v = ctx.val(args[0])
    return V(v.num.transpose(0, 2, 1), v.kind.transpose(0, 2, 1), None if v.txt is None else v.txt.transpose(0, 2, 1))


def _int_arg(ctx, x):
    num, err = _to_num(ctx.val(x))
    return np.trunc(num).astype(np.int64), err


def f_index(ctx, args):
    if not 2 <= len(args) <= 3:
        raise WorkbookError(f"{ctx.where}: INDEX takes 2 or 3 arguments")
    src = args[0]
    h, w = (src.h, src.w) if isinstance(src, Ref) else ctx.val(src).shape[1:]
    ri, er = _int_arg(ctx, args[1])
    if len(args) == 3 and args[2] is not None:
        ci, ec = _int_arg(ctx, args[2])
    else:
        ci, ec = np.ones((1, 1, 1), np.int64), np.zeros((1, 1, 1), np.int8)
        if h == 1:  # one index into a single row counts along the row
            ri, ci = ci, ri
            er, ec = ec, er
    ri, ci = np.broadcast_arrays(ri, ci)
    err = np.where(er != 0, er, ec)
    bad = (ri < 1) | (ri > h) | (ci < 1) | (ci > w)
    err = np.where((err == 0) & bad, E_REF, err)
    ri, ci = np.where(bad, 1, ri), np.where(bad, 1, ci)
    if isinstance(src, Ref):
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

        v = V(take(sv.num), take(sv.kind), None if sv.txt is None else take(sv.txt))
    err = np.broadcast_to(err, v.shape)
    kind = np.where(err != 0, err, v.kind).astype(np.int8)
    return V(np.where(err != 0, 0.0, v.num), kind, v.txt)


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


def f_match(ctx, args):
    if not 2 <= len(args) <= 3:
        raise WorkbookError(f"{ctx.where}: MATCH takes 2 or 3 arguments")
    x = ctx.val(args[0])
    rng = ctx.val(args[1])
    mt = 1
    if len(args) == 3 and args[2] is not None:
        t, _ = _to_num(ctx.val(args[2]))
        mt = int(np.sign(t.ravel()[0]))
    if rng.shape[1] != 1 and rng.shape[2] != 1:
        return _err((1, 1, 1), E_NA)
    B = max(x.shape[0], rng.shape[0])
    x = V(*[None if a is None else np.broadcast_to(a, (B,) + x.shape[1:]) for a in (x.num, x.kind, x.txt)])
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
    return _result(out, err)


def _match_numbers(x: V, rng: V) -> V:
    """Exact MATCH of numbers in numbers and empty cells: the first equal one, else #N/A."""
    n = rng.shape[1] * rng.shape[2]
    if rng.shape[0] > 1 and x.num[0].size * n <= 4096:
        # a small range per cell (e.g. one row of slots): compare every element at once
        nums = np.where(rng.kind == NUM, rng.num, np.nan).reshape(rng.shape[0], 1, n)
        eq = nums == x.num.reshape(x.shape[0], -1, 1)  # [B, x elements, n]
        hit = eq.any(axis=2)
        at = np.where(hit, eq.argmax(axis=2) + 1, 0).reshape(x.shape).astype(float)
        return V(at, np.where(hit.reshape(x.shape), NUM, E_NA).astype(np.int8))
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
    return V(out, np.where(found, NUM, E_NA).astype(np.int8))


def f_exact(ctx, args):
    a, b = _bcast(ctx.val(args[0]), ctx.val(args[1]))
    err = np.where(a.kind >= ERR_BASE, a.kind, np.where(b.kind >= ERR_BASE, b.kind, 0))
    res = (_text_array(a) == _text_array(b)).astype(float)
    return V(np.where(err != 0, 0.0, res), np.where(err != 0, err, BOOL).astype(np.int8))


def _truth(v: V):
    """Condition coercion: number != 0, bool, empty=FALSE; text -> #VALUE!."""
    err = np.where(v.kind >= ERR_BASE, v.kind, np.where(v.kind == TEXT, E_VALUE, 0)).astype(np.int8)
    return (v.num != 0) & (v.kind != EMPTY), err


def _select(cond, a: V, b: V) -> V:
    num = np.where(cond, a.num, b.num)
    kind = np.where(cond, a.kind, b.kind).astype(np.int8)
    txt = None
    if a.txt is not None or b.txt is not None:
        ta = a.txt if a.txt is not None else np.empty(a.shape, object)
        tb = b.txt if b.txt is not None else np.empty(b.shape, object)
        txt = np.where(cond, ta, tb)
    return V(num, kind, txt)


def _empty_to_zero(v: V) -> V:
    if (v.kind == EMPTY).any():
        return V(np.where(v.kind == EMPTY, 0.0, v.num), np.where(v.kind == EMPTY, NUM, v.kind).astype(np.int8), v.txt)
    return v


def f_if(ctx, args):
    if not 2 <= len(args) <= 3:
        raise WorkbookError(f"{ctx.where}: IF takes 2 or 3 arguments")
    c = ctx.val(args[0])
    a = _empty_to_zero(ctx.val(args[1])) if args[1] is not None else _const(0.0)
    if len(args) == 3:
        b = _empty_to_zero(ctx.val(args[2])) if args[2] is not None else _const(0.0)
    else:
        b = _const(0.0, BOOL)
    c, a, b = _bcast(c, a, b)
    t, err = _truth(c)
    v = _select(t, a, b)
    return V(np.where(err != 0, 0.0, v.num), np.where(err != 0, err, v.kind).astype(np.int8), v.txt)


def f_iferror(ctx, args):
    a = _empty_to_zero(ctx.val(args[0]))
    b = _empty_to_zero(ctx.val(args[1])) if args[1] is not None else _const(0.0)
    a, b = _bcast(a, b)
    return _select(a.kind < ERR_BASE, a, b)


def _is(pred):
    def f(ctx, args):
        v = ctx.val(args[0])
        return V(pred(v.kind).astype(float), np.full(v.shape, BOOL, np.int8))

    return f


def _logic(any_: bool):
    def f(ctx, args):
        vals, errs, counts = [], [], []
        for a in args:
            if a is None:
                continue
            v = ctx.val(a)
            B = v.shape[0]
            k = v.kind.reshape(B, -1)
            if isinstance(a, Ref) or v.shape[1:] != (1, 1):
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
        return V(
            np.where(err != 0, 0.0, r.reshape(B, 1, 1).astype(float)), np.where(err != 0, err, BOOL).astype(np.int8)
        )

    return f


def f_not(ctx, args):
    t, err = _truth(ctx.val(args[0]))
    return V(np.where(err != 0, 0.0, (~t).astype(float)), np.where(err != 0, err, BOOL).astype(np.int8))


def _rowcol(is_row: bool):
    def f(ctx, args):
        if not args or args[0] is None:
            v = (ctx.rows if is_row else ctx.cols) + 1.0
            return _out(v, 0)
        a = args[0]
        if not isinstance(a, Ref):
            raise WorkbookError(f"{ctx.where}: {'ROW' if is_row else 'COLUMN'} needs a reference")
        start = (a.r0 if is_row else a.c0).astype(float)
        n = a.h if is_row else a.w
        if n == 1:
            return _out(start + 1, 0)
        off = np.arange(n, dtype=float)
        num = start[:, None] + 1 + off[None, :]
        num = num[:, :, None] if is_row else num[:, None, :]
        return V(num, np.full(num.shape, NUM, np.int8))

    return f


def _dims(is_rows: bool):
    def f(ctx, args):
        a = args[0]
        if isinstance(a, Ref):
            return _const(float(a.h if is_rows else a.w))
        v = ctx.val(a)
        return _const(float(v.shape[1] if is_rows else v.shape[2]))

    return f


def f_len(ctx, args):
    v = ctx.val(args[0])
    res = np.vectorize(len, otypes=[float])(_text_array(v)) if v.num.size else np.zeros(v.shape)
    err = np.where(v.kind >= ERR_BASE, v.kind, 0)
    return _result(res, err)


def f_mid(ctx, args):
    """MID(text, start, count): characters start..start+count-1 (1-based); #VALUE! if start < 1 or count < 0."""
    if len(args) != 3:
        raise WorkbookError(f"{ctx.where}: MID takes 3 arguments")
    t = ctx.val(args[0])
    s, es = _to_num(ctx.val(args[1]))
    n, en = _to_num(ctx.val(args[2]))
    t, sv, nv = _bcast(
        t, V(s, np.where(es != 0, es, NUM).astype(np.int8)), V(n, np.where(en != 0, en, NUM).astype(np.int8))
    )
    err = np.where(
        t.kind >= ERR_BASE, t.kind, np.where(sv.kind >= ERR_BASE, sv.kind, np.where(nv.kind >= ERR_BASE, nv.kind, 0))
    )
    txt, texts = np.empty(t.shape, object), _text_array(t)
    for i in np.ndindex(t.shape):
        if err[i]:
            continue
        start, count = int(np.trunc(sv.num[i])), int(np.trunc(nv.num[i]))
        if start < 1 or count < 0:
            err[i] = E_VALUE
            continue
        txt[i] = texts[i][start - 1 : start - 1 + count]
    return V(np.zeros(t.shape), np.where(err != 0, err, TEXT).astype(np.int8), txt)


def f_n(ctx, args):
    a = args[0]
    v = ctx.val(a)
    if isinstance(a, Ref):
        v = V(v.num[:, :1, :1], v.kind[:, :1, :1])
    num = np.where((v.kind == NUM) | (v.kind == BOOL), v.num, 0.0)
    err = np.where(v.kind >= ERR_BASE, v.kind, 0)
    return _result(num, err)


def f_choose(ctx, args):
    if len(args) < 2:
        raise WorkbookError(f"{ctx.where}: CHOOSE takes an index and at least one value")
    idx, err = _to_num(ctx.val(args[0]))
    idx = np.trunc(idx).astype(np.int64)
    opts = [_empty_to_zero(ctx.val(a)) if a is not None else _const(0.0) for a in args[1:]]
    allv = _bcast(V(idx.astype(float), np.where(err != 0, err, NUM).astype(np.int8)), *opts)
    iv, opts = allv[0], allv[1:]
    i = iv.num.astype(np.int64)
    bad = (i < 1) | (i > len(opts))
    out = V(np.zeros(iv.shape), np.full(iv.shape, E_VALUE, np.int8))
    for n, o in enumerate(opts, 1):
        out = _select(i == n, o, out)
    e = np.where(iv.kind >= ERR_BASE, iv.kind, np.where(bad, E_VALUE, 0))
    return V(np.where(e != 0, 0.0, out.num), np.where(e != 0, e, out.kind).astype(np.int8), out.txt)


def _round_one(x: float, d: int) -> float:
    if not math.isfinite(x):
        return x
    q = Decimal(repr(float(f"{x:.15g}")))
    return float(q.quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP)) if d >= -300 else 0.0


def f_round(ctx, args):
    x, ex = _to_num(ctx.val(args[0]))
    d, ed = _to_num(ctx.val(args[1]))
    x, d, ex, ed = np.broadcast_arrays(x, d, ex, ed)
    err = np.where(ex != 0, ex, ed)
    res = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        if err[i] == 0:
            res[i] = _round_one(float(x[i]), int(np.trunc(d[i])))
    return _result(res, err)


def f_mod(ctx, args):
    """MOD(n, d) = n - d * INT(n / d): the remainder takes the divisor's sign; d = 0 is #DIV/0!."""
    n, en = _to_num(ctx.val(args[0]))
    d, ed = _to_num(ctx.val(args[1]))
    n, d, en, ed = np.broadcast_arrays(n, d, en, ed)
    err = np.where(en != 0, en, np.where(ed != 0, ed, np.where(d == 0, E_DIV0, 0)))
    with np.errstate(all="ignore"):
        res = n - d * np.floor(n / np.where(d == 0, 1.0, d))
    return _result(res, err)


FUNCS = {
    "SUM": f_sum,
    "SUMPRODUCT": f_sumproduct,
    "AVERAGE": f_average,
    "VAR.P": f_varp,
    "VARP": f_varp,
    "MAX": _maxmin(np.max, -np.inf),
    "MIN": _maxmin(np.min, np.inf),
    "LARGE": _kth(True),
    "SMALL": _kth(False),
    "COUNT": f_count,
    "ABS": _elementwise(np.abs),
    "EXP": _elementwise(np.exp),
    "LN": _elementwise(np.log, lambda x: x > 0),
    "SQRT": _elementwise(np.sqrt, lambda x: x >= 0),
    "TANH": _elementwise(np.tanh),
    "PI": f_pi,
    "POWER": f_power,
    "MMULT": f_mmult,
    "TRANSPOSE": f_transpose,
    "INDEX": f_index,
    "MATCH": f_match,
    "EXACT": f_exact,
    "IF": f_if,
    "IFERROR": f_iferror,
    "ISNUMBER": _is(lambda k: k == NUM),
    "ISERROR": _is(lambda k: k >= ERR_BASE),
    "ISTEXT": _is(lambda k: k == TEXT),
    "AND": _logic(False),
    "OR": _logic(True),
    "NOT": f_not,
    "ROW": _rowcol(True),
    "COLUMN": _rowcol(False),
    "ROWS": _dims(True),
    "COLUMNS": _dims(False),
    "LEN": f_len,
    "MID": f_mid,
    "N": f_n,
    "CHOOSE": f_choose,
    "ROUND": f_round,
    "MOD": f_mod,
}

# (fewest, most) arguments, as Excel allows; a call outside them is refused before evaluation
ARITY = {
    "PI": (0, 0),
    "ROW": (0, 1),
    "COLUMN": (0, 1),
    "IF": (2, 3),
    "INDEX": (2, 3),
    "MATCH": (2, 3),
    "LARGE": (2, 2),
    "SMALL": (2, 2),
    "POWER": (2, 2),
    "MMULT": (2, 2),
    "EXACT": (2, 2),
    "IFERROR": (2, 2),
    "ROUND": (2, 2),
    "MOD": (2, 2),
    "CHOOSE": (2, 255),
    "MID": (3, 3),
}
ARITY |= {
    f: (1, 1)
    for f in (
        "ABS",
        "EXP",
        "LN",
        "SQRT",
        "TANH",
        "TRANSPOSE",
        "ISNUMBER",
        "ISERROR",
        "ISTEXT",
        "NOT",
        "ROWS",
        "COLUMNS",
        "LEN",
        "N",
    )
}


# ----------------------------------------------------------------------------- driver


@dataclass
class Result:
    """values[sheet]: float64 [rows, cols], NaN where empty/text/error (booleans 1/0);
    kinds[sheet]: int8 codes (EMPTY, NUM, TEXT, BOOL, >= ERR_BASE errors);
    text[sheet]: {(row, col): str}; errors[sheet]: {(row, col): '#N/A'};
    formula_cells / groups / seconds: what was evaluated."""

    values: dict[str, np.ndarray]
    kinds: dict[str, np.ndarray]
    text: dict[str, dict]
    errors: dict[str, dict]
    formula_cells: int = 0
    groups: int = 0
    seconds: float = 0.0


@dataclass
class Unit:
    sheet: str
    key: str
    ast: tuple
    rows: np.ndarray
    cols: np.ndarray
    array: tuple | None = None  # (r0, c0, r1, c1) of a CSE formula over more than one cell
    top_left: bool = False  # one-cell CSE formulas, grouped: each cell shows its array's top-left value
    reads: list = field(default_factory=list)  # (sheet, r0, c0, r1, c1): what each box's references cover
    boxes: list = field(default_factory=list)  # (r0, c0, r1, c1) rectangles that hold the unit's cells
    refs: list = field(default_factory=list)  # (sheet, ref or range node) of the formula, sheet resolved

    @property
    def where(self) -> str:
        return where_name(self.sheet, int(self.rows[0]), int(self.cols[0]))


def _walk(node):
    yield node
    if node[0] in ("neg", "pct"):
        yield from _walk(node[1])
    elif node[0] == "bin":
        yield from _walk(node[2])
        yield from _walk(node[3])
    elif node[0] == "call":
        for a in node[2]:
            yield from _walk(a)


def _fills_on_grid(key: str, rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether every reference of the R1C1 formula ``key`` stays on the grid from each cell."""
    try:
        ast = parse_r1c1(key)
    except WorkbookError:
        return True  # reported with its cell by _unit
    for node in _walk(ast):
        if node[0] in ("ref", "range"):
            parts = [(node[2], node[3], node[4], node[5])]
            if node[0] == "range":
                parts.append((node[6], node[7], node[8], node[9]))
            for r, ra, c, ca in parts:
                if not ra and ((rows + r).min() < 0 or (rows + r).max() >= MAX_ROWS):
                    return False
                if not ca and ((cols + c).min() < 0 or (cols + c).max() >= MAX_COLS):
                    return False
    return True


def _rects(rows: np.ndarray, cols: np.ndarray, limit: int = 64) -> list[tuple]:
    """Rectangles (r0, c0, r1, c1) that together hold exactly the cells, when a few do (a unit
    of cells in two places, e.g. one formula in two sections of a tab, must not seem to write
    everything between them); else the one bounding box."""
    order = np.lexsort((rows, cols))
    r, c = rows[order], cols[order]
    cut = np.r_[True, (c[1:] != c[:-1]) | (r[1:] != r[:-1] + 1)]  # runs of rows in a column
    first = np.flatnonzero(cut)
    last = np.r_[first[1:], len(r)] - 1
    runs = np.stack([r[first], c[first], r[last]], 1)  # r0, c, r1
    runs = runs[np.lexsort((runs[:, 1], runs[:, 2], runs[:, 0]))]
    cut = np.r_[True, (runs[1:, 0] != runs[:-1, 0]) | (runs[1:, 2] != runs[:-1, 2]) | (runs[1:, 1] != runs[:-1, 1] + 1)]
    if cut.sum() > limit:
        return [(int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max()))]
    first = np.flatnonzero(cut)
    last = np.r_[first[1:], len(runs)] - 1
    return [
        (int(a), int(b), int(c_), int(d))
        for a, b, c_, d in zip(runs[first, 0], runs[first, 1], runs[last, 2], runs[last, 1])
    ]


def _extent(node, r0: int, c0: int, r1: int, c1: int) -> tuple[int, int, int, int]:
    """(first row, first col, last row, last col) that a ref/range node reaches from the cells
    of the rectangle r0..r1 x c0..c1 (relative parts are extreme at its corners)."""
    ends = [node[2:6]] if node[0] == "ref" else [node[2:6], node[6:10]]
    rs = [x for r, ra, _, _ in ends for x in ((r,) if ra else (r0 + r, r1 + r))]
    cs = [x for _, _, c, ca in ends for x in ((c,) if ca else (c0 + c, c1 + c))]
    return min(rs), min(cs), max(rs), max(cs)


def _reads(refs: list, boxes: list) -> list[tuple]:
    """(sheet, r0, c0, r1, c1) that the references reach from the boxes' cells, without repeats."""
    out = []
    for sh, node in refs:
        for box in boxes:
            read = (sh, *_extent(node, *box))
            if read not in out:
                out.append(read)
    return out


def _ref_bounds(node, rows, cols):
    """Per-cell (r0, c0, r1, c1) arrays of a ref/range node."""
    if node[0] == "ref":
        _, _, r, ra, c, ca = node
        r1, r1a, c1, c1a = r, ra, c, ca
    else:
        _, _, r, ra, c, ca, r1, r1a, c1, c1a = node
    R0 = np.full(rows.shape, r) if ra else rows + r
    R1 = np.full(rows.shape, r1) if r1a else rows + r1
    C0 = np.full(cols.shape, c) if ca else cols + c
    C1 = np.full(cols.shape, c1) if c1a else cols + c1
    return np.minimum(R0, R1), np.minimum(C0, C1), np.maximum(R0, R1), np.maximum(C0, C1)


class Evaluator:
    def __init__(self, book: Book, progress=None):
        self.book = book
        self.store = Store(book)
        self.progress = progress
        self.done = 0

    # -- building units
    def units(self) -> list[Unit]:
        out: list[Unit] = []
        for name, sh in self.book.sheets.items():
            groups: dict[str, list] = {}
            f = sh.formulas
            shared = getattr(f, "shared", None)  # the reader's Formulas: shared groups kept whole
            if shared is None:
                cells, shared = f, []
            else:
                cells = itertools.chain(
                    zip(f.rows.tolist(), f.cols.tolist(), f.texts, itertools.repeat(None)), f.arrays
                )
            cse: dict[str, list] = {}  # one-cell CSE formulas, grouped like plain cells
            for r, c, text, rng in cells:
                try:
                    key = to_r1c1(text, r, c)
                except WorkbookError as e:
                    raise WorkbookError(f"{where_name(name, r, c)}: {e.message}") from None
                if rng is not None and tuple(rng) == (r, c, r, c):
                    cse.setdefault(key, []).append((r, c))
                elif rng is not None:
                    out.append(self._unit(name, key, np.array([r]), np.array([c]), rng))
                else:
                    groups.setdefault(key, []).append((r, c))
            for key, cells in cse.items():
                a = np.array(cells, dtype=np.int64)
                out.append(self._unit(name, key, a[:, 0], a[:, 1], None, top_left=True))
            for r0, c0, text, rs, cs in shared:
                # a shared formula is one R1C1 formula over its cells (Excel's meaning),
                # unless filling it pushes a reference off the grid (#REF! in those cells)
                key = to_r1c1(text, r0, c0)
                if _fills_on_grid(key, np.array(rs), np.array(cs)):
                    groups.setdefault(key, []).extend(zip(rs, cs))
                    continue
                for r, c in zip(rs, cs):
                    t = text if (r, c) == (r0, c0) else shift_formula(text, r - r0, c - c0)
                    groups.setdefault(to_r1c1(t, r, c), []).append((r, c))
            for key, cells in groups.items():
                a = np.array(cells, dtype=np.int64)
                out.append(self._unit(name, key, a[:, 0], a[:, 1], None))
        return out

    def _unit(self, sheet, key, rows, cols, rng, top_left: bool = False) -> Unit:
        where = where_name(sheet, int(rows[0]), int(cols[0]))
        try:
            ast = parse_r1c1(key)
        except WorkbookError as e:
            raise WorkbookError(f"{where}: {e.message}") from None
        u = Unit(sheet, key, ast, rows, cols, rng, top_left)
        refs = []
        for node in _walk(ast):
            if node[0] == "call" and node[1] not in FUNCS:
                raise WorkbookError(f"{where}: unsupported function {node[1]}")
            lo, hi = ARITY.get(node[1], (1, 255)) if node[0] == "call" else (0, 0)
            if node[0] == "call" and not lo <= len(node[2]) <= hi:
                raise WorkbookError(
                    f"{where}: {node[1]} takes {lo if lo == hi else f'{lo} to {hi}'} arguments, got {len(node[2])}"
                )
            if node[0] in ("ref", "range"):
                sh = sheet if node[1] is None else self.store.sheet(node[1])
                if sh is None:
                    raise WorkbookError(f"{where}: reference to a sheet that does not exist: {node[1]!r}")
                refs.append((sh, node))
        u.boxes = [rng] if rng else _rects(rows, cols)
        u.refs = refs
        # (a CSE formula's references are relative to its top-left cell alone; its reads are
        # taken over its whole range, which is more than it reads but never less)
        cells = u.boxes if rng is None else [(int(rows[0]), int(cols[0]), int(rows[0]), int(cols[0]))]
        for sh, node in refs:
            if any(min(_extent(node, *box)[:2]) < 0 for box in cells):
                raise WorkbookError(f"{where}: reference off the sheet")
        u.reads = _reads(refs, u.boxes)
        return u

    @staticmethod
    def _split(u: Unit) -> list[Unit]:
        """A unit of several rectangles as one unit per rectangle (a formula filled over
        several blocks, e.g. every merge round of the BPE tab, whose blocks read each other
        in turn); else the unit itself."""
        if len(u.boxes) == 1 or u.array is not None:
            return [u]
        out = []
        for box in u.boxes:
            r0, c0, r1, c1 = box
            m = (u.rows >= r0) & (u.rows <= r1) & (u.cols >= c0) & (u.cols <= c1)
            out.append(
                Unit(
                    u.sheet, u.key, u.ast, u.rows[m], u.cols[m], None, u.top_left, _reads(u.refs, [box]), [box], u.refs
                )
            )
        return out

    # -- ordering
    def order(self, units: list[Unit]):
        """Strongly connected components of the dependency graph of the units' rectangles,
        in evaluation order; each item is (units, needs_cell_level)."""
        boxes: dict[str, list] = {}
        ids: dict[str, list] = {}
        for i, u in enumerate(units):
            boxes.setdefault(u.sheet, []).extend(u.boxes)
            ids.setdefault(u.sheet, []).extend([i] * len(u.boxes))
        boxes = {s: np.array(b).reshape(-1, 4) for s, b in boxes.items()}
        ids = {s: np.array(i) for s, i in ids.items()}
        deps: list[list[int]] = []
        self_loop = np.zeros(len(units), bool)
        for i, u in enumerate(units):
            d = set()
            for sh, r0, c0, r1, c1 in u.reads:
                b = boxes.get(sh)
                if b is None:
                    continue
                hit = (b[:, 0] <= r1) & (b[:, 2] >= r0) & (b[:, 1] <= c1) & (b[:, 3] >= c0)
                d.update(ids[sh][hit].tolist())
            if i in d:
                self_loop[i] = True
            deps.append(sorted(d))
        # Tarjan's SCC, iterative; emits components in dependency order
        index = [-1] * len(units)
        low = [0] * len(units)
        on = [False] * len(units)
        stack, comps, counter = [], [], 0
        for s in range(len(units)):
            if index[s] >= 0:
                continue
            work = [(s, 0)]
            while work:
                v, pi = work.pop()
                if pi == 0:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on[v] = True
                recurse = False
                for j in range(pi, len(deps[v])):
                    w = deps[v][j]
                    if index[w] < 0:
                        work.append((v, j + 1))
                        work.append((w, 0))
                        recurse = True
                        break
                    if on[w]:
                        low[v] = min(low[v], index[w])
                if recurse:
                    continue
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on[w] = False
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(comp)
                if work:
                    p = work[-1][0]
                    low[p] = min(low[p], low[v])
        for comp in comps:
            yield [units[i] for i in comp], len(comp) > 1 or bool(self_loop[comp[0]])

    # -- evaluation
    def run(self) -> Result:
        import time

        t0 = time.perf_counter()
        units = self.units()
        self.total = sum(len(u.rows) for u in units)
        for comp, cyclic in self.order(units):
            if not cyclic:
                self._eval_unit(comp[0], comp[0].rows, comp[0].cols)
                continue
            # groups that read each other: first as one group per rectangle, which is often
            # enough to order them (the BPE tab's merge rounds); what still reads itself is
            # ordered cell by cell
            parts = [p for u in comp for p in self._split(u)]
            for sub, still in self.order(parts) if len(parts) > len(comp) else [(comp, True)]:
                if still:
                    self._cell_level(sub)
                else:
                    self._eval_unit(sub[0], sub[0].rows, sub[0].cols)
        return self._result(units, time.perf_counter() - t0)

    def _eval_unit(self, u: Unit, rows, cols) -> None:
        # ranges whose size differs per cell (e.g. SUM($A$1:A5)): split by size
        mixed = [n for _, n in u.refs if n[0] == "range" and (n[3] != n[7] or n[5] != n[9])]
        if mixed and len(rows) > 1:
            keys = np.zeros((len(rows), 0), np.int64)
            for n in mixed:
                r0, c0, r1, c1 = _ref_bounds(n, rows, cols)
                keys = np.column_stack([keys, r1 - r0, c1 - c0])
            _, inv = np.unique(keys, axis=0, return_inverse=True)
            inv = inv.ravel()
            if inv.max() > 0:
                for g in range(inv.max() + 1):
                    m = inv == g
                    self._eval_batch(u, rows[m], cols[m])
                return
        self._eval_batch(u, rows, cols)

    def _eval_batch(self, u: Unit, rows, cols) -> None:
        area = 1
        for _, n in u.refs:
            if n[0] == "range":
                r0, c0, r1, c1 = _ref_bounds(n, rows[:1], cols[:1])
                if n[3] == n[7] and n[5] == n[9] and not (n[3] and n[5]):
                    area = max(area, int((r1[0] - r0[0] + 1) * (c1[0] - c0[0] + 1)))
        step = max(1, MAX_BATCH_ELEMENTS // area)
        for s in range(0, len(rows), step):
            self._eval_chunk(u, rows[s : s + step], cols[s : s + step])

    def _eval_chunk(self, u: Unit, rows, cols) -> None:
        ctx = Ctx(self, u.sheet, rows, cols, where_name(u.sheet, int(rows[0]), int(cols[0])))
        v = ctx.val(ctx.eval(u.ast))
        if u.array is not None:
            r0, c0, r1, c1 = u.array
            H, W = r1 - r0 + 1, c1 - c0 + 1
            v = _bcast(v, V(np.zeros((1, H, W)), np.zeros((1, H, W), np.int8)))[0]
            v = V(v.num[:, :H, :W], v.kind[:, :H, :W], None if v.txt is None else v.txt[:, :H, :W])
            rr = np.arange(r0, r1 + 1)[:, None] + np.zeros((1, W), int)
            cc = np.arange(c0, c1 + 1)[None, :] + np.zeros((H, 1), int)
            self.store.write(u.sheet, rr, cc, V(v.num[0], v.kind[0], None if v.txt is None else v.txt[0]))
            self.done += H * W
        else:
            if v.shape[1:] != (1, 1) and not u.top_left:
                raise WorkbookError(
                    f"{ctx.where}: formula gives a {v.shape[1]}x{v.shape[2]} array in a plain cell; enter it as an array formula"
                )
            B = len(rows)
            flat = V(
                np.broadcast_to(v.num[:, 0, 0], (B,)),
                np.broadcast_to(v.kind[:, 0, 0], (B,)),
                None if v.txt is None else np.broadcast_to(v.txt[:, 0, 0], (B,)),
            )
            self.store.write(u.sheet, rows, cols, flat)
            self.done += B
        if self.progress:
            self.progress(self.done, self.total)

    def _cell_level(self, comp: list[Unit]) -> None:
        """Exact cell dependencies inside a component of possibly-circular groups: every
        cell is a node, nodes are levelled (a cell's level is one more than the highest
        level it reads), and each level is evaluated one unit at a time, vectorized."""
        owner: dict[str, np.ndarray] = {}  # sheet -> node id of each cell, -1 outside the component
        starts, n = [], 0
        for u in comp:
            starts.append(n)
            n += 1 if u.array is not None else len(u.rows)
        for k, u in enumerate(comp):
            if u.sheet not in owner:
                owner[u.sheet] = np.full(self.store.kind[u.sheet].shape, -1, np.int64)
            if u.array is not None:
                r0, c0, r1, c1 = u.array
                owner[u.sheet][r0 : r1 + 1, c0 : c1 + 1] = starts[k]
            else:
                owner[u.sheet][u.rows, u.cols] = np.arange(starts[k], starts[k] + len(u.rows))
        src, dst = self._edges(comp, starts, owner, n)  # dst reads src
        levels = self._levels(comp, starts, n, src, dst)
        unit_of = np.repeat(np.arange(len(comp)), np.diff(starts + [n]))
        index_in_unit = np.arange(n) - np.array(starts)[unit_of]
        order = np.lexsort((index_in_unit, unit_of, levels))
        key = levels[order] * len(comp) + unit_of[order]
        cuts = np.flatnonzero(np.diff(key)) + 1
        for sel in np.split(order, cuts):
            u = comp[int(unit_of[sel[0]])]
            idx = index_in_unit[sel]
            self._eval_unit(u, u.rows[idx], u.cols[idx])

    def _edges(self, comp, starts, owner, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) node pairs among the component's ``n`` nodes, dst reading src, without repeats."""
        src, dst = [], []
        for k, u in enumerate(comp):
            node = (np.zeros(1, np.int64) if u.array is not None else np.arange(len(u.rows))) + starts[k]
            for sh, ref in u.refs:  # (sheet names resolved when the unit was made)
                if sh not in owner:
                    continue
                own = owner[sh]
                r0, c0, r1, c1 = _ref_bounds(ref, u.rows, u.cols)
                r1, c1 = np.minimum(r1, own.shape[0] - 1), np.minimum(c1, own.shape[1] - 1)
                h, w = r1 - r0 + 1, c1 - c0 + 1
                live = (h > 0) & (w > 0)
                if not live.any():
                    continue
                if (h[live] == h[live][0]).all() and (w[live] == w[live][0]).all():
                    # one shape for every cell: gather all the blocks at once
                    dr, dc = np.divmod(np.arange(int(h[live][0]) * int(w[live][0])), int(w[live][0]))
                    got = own[r0[live, None] + dr, c0[live, None] + dc]  # [cells, h*w]
                    hit = got >= 0
                    src.append(got[hit])
                    dst.append(np.broadcast_to(node[live, None], got.shape)[hit])
                    continue
                for i in np.flatnonzero(live):  # ranges that grow from cell to cell
                    got = own[r0[i] : r1[i] + 1, c0[i] : c1[i] + 1]
                    got = got[got >= 0]
                    src.append(got)
                    dst.append(np.full(len(got), node[i]))
        if not src:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        codes = np.sort(np.concatenate(dst) * n + np.concatenate(src))
        codes = codes[np.r_[True, codes[1:] != codes[:-1]]]  # (np.unique hashes: several times slower here)
        return codes % n, codes // n

    def _levels(self, comp, starts, n, src, dst) -> np.ndarray:
        """Kahn's algorithm, a level at a time; a circular reference names one of its cells."""
        order = np.argsort(src, kind="stable")
        readers, first = dst[order], np.searchsorted(src[order], np.arange(n + 1))
        waiting = np.bincount(dst, minlength=n)
        levels = np.full(n, -1)
        frontier, lv = np.flatnonzero(waiting == 0), 0
        while len(frontier):
            levels[frontier] = lv
            nxt = np.concatenate(
                [readers[first[j] : first[j + 1]] for j in frontier.tolist()] or [np.zeros(0, np.int64)]
            )
            np.subtract.at(waiting, nxt, 1)
            frontier, lv = np.unique(nxt[waiting[nxt] == 0]), lv + 1
        if (levels < 0).any():
            # walk back along dependencies among the unresolved until a node repeats
            j, seen = int(np.flatnonzero(levels < 0)[0]), set()
            while j not in seen:
                seen.add(j)
                j = int(next(s for s, d in zip(src, dst) if d == j and levels[s] < 0))
            k = int(np.searchsorted(starts, j, side="right") - 1)
            u, i = comp[k], j - starts[k]
            raise WorkbookError(f"{where_name(u.sheet, int(u.rows[i]), int(u.cols[i]))}: circular reference")
        return levels

    def _result(self, units, seconds) -> Result:
        values, kinds, text, errors = {}, {}, {}, {}
        for name in self.book.sheets:
            k = self.store.kind[name]
            if name in self.store.shared:
                values[name], kinds[name], text[name], errors[name] = self.store.num[name], k, {}, {}
                continue
            num = np.where((k == NUM) | (k == BOOL), self.store.num[name], np.nan)
            values[name], kinds[name] = num, k
            text[name] = self.store.texts(name)
            er = np.nonzero(k >= ERR_BASE)
            errors[name] = {(int(r), int(c)): ERRORS[k[r, c] - ERR_BASE] for r, c in zip(*er)}
        return Result(values, kinds, text, errors, formula_cells=self.total, groups=len(units), seconds=seconds)


def evaluate(book: Book, *, progress=None) -> Result:
    """Recompute every formula cell of ``book``. ``progress(done, total)`` is called
    after each batch."""
    return Evaluator(book, progress).run()
