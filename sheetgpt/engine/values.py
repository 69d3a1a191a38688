"""Values: a batch of cell values under evaluation, Excel's coercions, and the recomputed values of a book.

A ``Batch`` carries three parallel arrays of shape [B, rows, cols]: ``num`` (float64), ``kind``
(int8: EMPTY, NUM, TEXT, BOOL, or an error code from ERR_BASE on) and ``txt`` (an object array
of strings, or None when no text is present). B is the number of cells computed at once, or 1
for a value that is the same for every cell (broadcast); a plain cell's value is [B, 1, 1].

``Values`` is what every engine returns: numbers, texts and errors by sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..a1 import ERRORS, parse_cell, where

EMPTY, NUM, TEXT, BOOL = 0, 1, 2, 3
ERR_BASE = 10
ERR = {e: ERR_BASE + i for i, e in enumerate(ERRORS)}  # '#N/A' -> its kind code
E_DIV0, E_VALUE, E_REF, E_NUM, E_NA = ERR["#DIV/0!"], ERR["#VALUE!"], ERR["#REF!"], ERR["#NUM!"], ERR["#N/A"]


class Batch:
    """A batch of values: num/kind (and txt, object or None) of shape [B, h, w]."""

    __slots__ = ("num", "kind", "txt")

    def __init__(self, num, kind, txt=None):
        self.num = num
        self.kind = kind
        self.txt = txt

    @property
    def shape(self):
        return self.kind.shape


def const(num=0.0, kind=NUM, txt=None) -> Batch:
    """One value for every cell: [1, 1, 1]."""
    t = None
    if txt is not None:
        t = np.empty((1, 1, 1), object)
        t[0, 0, 0] = txt
    return Batch(np.full((1, 1, 1), num, float), np.full((1, 1, 1), kind, np.int8), t)


def error(shape, code) -> Batch:
    return Batch(np.zeros(shape), np.full(shape, code, np.int8))


def empty() -> Batch:
    """An empty cell, for every cell: [1, 1, 1]."""
    return Batch(np.zeros((1, 1, 1)), np.zeros((1, 1, 1), np.int8))


# ----------------------------------------------------------------------------- coercions


def broadcast(*vs: Batch) -> list[Batch]:
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
                v = Batch(num, kind, txt)
            out.append(v)
        vs = out
        shape = np.broadcast_shapes(*[v.shape for v in vs])
    res = []
    for v in vs:
        if v.shape != shape:
            v = Batch(
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


def to_num(v: Batch) -> tuple[np.ndarray, np.ndarray]:
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


def num_text(x: float) -> str:
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


def text_array(v: Batch) -> np.ndarray:
    """Every element as text (object array): numbers as Excel shows them in general
    format, booleans TRUE/FALSE, empty and errors ""."""
    out = np.full(v.shape, "", object)
    text = v.kind == TEXT
    if text.any():
        out[text] = v.txt[text]
    num = v.kind == NUM
    if num.any():
        out[num] = [num_text(float(x)) for x in v.num[num]]
    boolean = v.kind == BOOL
    if boolean.any():
        out[boolean] = np.where(v.num[boolean] != 0, "TRUE", "FALSE")
    return out


def truth(v: Batch):
    """Condition coercion: number != 0, bool, empty=FALSE; text -> #VALUE!. Returns (bool array, err)."""
    err = np.where(v.kind >= ERR_BASE, v.kind, np.where(v.kind == TEXT, E_VALUE, 0)).astype(np.int8)
    return (v.num != 0) & (v.kind != EMPTY), err


def first_error(*vs: Batch) -> np.ndarray:
    """Per element, the error code of the first argument that holds an error, else 0."""
    err = np.where(vs[-1].kind >= ERR_BASE, vs[-1].kind, 0)
    for v in vs[-2::-1]:
        err = np.where(v.kind >= ERR_BASE, v.kind, err)
    return err


def select(cond, a: Batch, b: Batch) -> Batch:
    """a where cond, else b (same shapes)."""
    num = np.where(cond, a.num, b.num)
    kind = np.where(cond, a.kind, b.kind).astype(np.int8)
    txt = None
    if a.txt is not None or b.txt is not None:
        ta = a.txt if a.txt is not None else np.empty(a.shape, object)
        tb = b.txt if b.txt is not None else np.empty(b.shape, object)
        txt = np.where(cond, ta, tb)
    return Batch(num, kind, txt)


def empty_to_zero(v: Batch) -> Batch:
    """An empty cell as the number 0, as a function that passes a value on shows it."""
    if (v.kind == EMPTY).any():
        return Batch(
            np.where(v.kind == EMPTY, 0.0, v.num), np.where(v.kind == EMPTY, NUM, v.kind).astype(np.int8), v.txt
        )
    return v


def numbers(num, err) -> Batch:
    """Numbers where err is 0, else the error; a non-finite number is #NUM!."""
    bad = ~np.isfinite(num)
    if bad.any():
        err = np.where((err == 0) & bad, E_NUM, err)
    kind = np.where(err != 0, err, NUM).astype(np.int8)
    return Batch(np.where(err != 0, 0.0, num), kind)


def per_cell(num, err) -> Batch:
    """One number (or error) per cell: [B] -> [B, 1, 1]."""
    num = np.asarray(num, float).reshape(-1, 1, 1)
    err = np.asarray(err).reshape(-1, 1, 1)
    num, err = np.broadcast_arrays(num, err)
    return numbers(np.where(err != 0, 0.0, num), err)


def booleans(res, err) -> Batch:
    """Booleans where err is 0, else the error."""
    return Batch(np.where(err != 0, 0.0, res.astype(float)), np.where(err != 0, err, BOOL).astype(np.int8))


# ----------------------------------------------------------------------------- a book's recomputed values


@dataclass
class Problem:
    """A formula the fast engine could not compute (it cannot be read; an unknown name or function; a
    circular reference, ...): its cells (0-based ``rows``, ``cols`` of ``sheet``) show ``code``."""

    sheet: str
    rows: np.ndarray
    cols: np.ndarray
    message: str
    code: str
    more: list = field(default_factory=list)  # (sheet, rows, cols) on other sheets: a cycle through several tabs

    def cells(self):
        """(sheet, row, col) of every cell of the problem."""
        for sheet, rows, cols in [(self.sheet, self.rows, self.cols), *self.more]:
            for r, c in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist()):
                yield sheet, r, c

    def at(self, i: int = 0) -> str:
        return where(self.sheet, int(self.rows[i]), int(self.cols[i]))

    @property
    def text(self) -> str:
        return f"{self.at()}: {self.message}"


@dataclass
class Values:
    """The values an engine recomputed for a book, by sheet, cells 0-based from A1.

    ``numbers[sheet]``: float64 [rows, cols], NaN where the cell holds no number (booleans are 1/0);
    ``text[sheet]``: {(row, col): str}; ``errors[sheet]``: {(row, col): '#N/A'} (LibreOffice names
    errors that have no Excel name 'Err:502'). ``values[sheet]`` is all three as one object array.
    ``timings``: seconds, ``total`` and, from LibreOffice, its phases.
    From the fast engine also ``kinds`` (int8 EMPTY/NUM/TEXT/BOOL/error codes by cell),
    ``formula_cells`` and ``groups`` (formula groups evaluated); from the engines that prove their
    recalculation (``registry``: LibreOffice, Gnumeric, IronCalc) the sentinel's value after it, and
    from LibreOffice and IronCalc also right after loading (see engine.libreoffice); from the fast
    engine, ``problems``: the formulas it could not compute (their cells show error values).
    """

    numbers: dict[str, np.ndarray]
    text: dict[str, dict[tuple[int, int], str]]
    errors: dict[str, dict[tuple[int, int], str]]
    timings: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, np.ndarray] | None = None
    formula_cells: int = 0
    groups: int = 0
    sentinel: float | None = None
    sentinel_on_load: float | None = None
    problems: list[Problem] = field(default_factory=list)
    _objects: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def sheets(self) -> list[str]:
        return list(self.numbers)

    @property
    def values(self) -> _ObjectArrays:
        """values[sheet]: object array [rows, cols] of float / str / None (empty) / error text."""
        return _ObjectArrays(self)

    def object_array(self, sheet: str) -> np.ndarray:
        if sheet not in self._objects:
            num = self.numbers[sheet]
            out = np.empty(num.shape, dtype=object)
            isnum = ~np.isnan(num)
            out[isnum] = num[isnum].tolist() if isnum.any() else []
            for (r, c), s in self.text[sheet].items():
                out[r, c] = s
            for (r, c), s in self.errors[sheet].items():
                out[r, c] = s
            self._objects[sheet] = out
        return self._objects[sheet]

    def value(self, sheet: str, cell: str):
        """One cell by A1 address ('B5'); None when outside the used area or empty."""
        r, c = parse_cell(cell)
        arr = self.object_array(sheet)
        if r >= arr.shape[0] or c >= arr.shape[1]:
            return None
        return arr[r, c]

    def describe(self, sheet: str, r: int, c: int):
        """One cell by 0-based row and column: its error text, text, number, or None."""
        if (r, c) in self.errors.get(sheet, {}):
            return self.errors[sheet][(r, c)]
        if (r, c) in self.text.get(sheet, {}):
            return self.text[sheet][(r, c)]
        arr = self.numbers.get(sheet)
        if arr is not None and r < arr.shape[0] and c < arr.shape[1] and not np.isnan(arr[r, c]):
            return float(arr[r, c])
        return None

    def number_grid(self, region) -> np.ndarray:
        """The numbers of a rectangle (a ``stages.Region``: its tab, top, left, bottom, right,
        rows and width), NaN where there is none."""
        arr = self.numbers.get(region.tab)
        out = np.full((region.rows, region.width), np.nan)
        if arr is None:
            return out
        sub = arr[region.top : region.bottom + 1, region.left : region.right + 1]
        out[: sub.shape[0], : sub.shape[1]] = sub
        return out


class _ObjectArrays:
    """``Values.values``: a read-only mapping sheet -> object array, made on first use."""

    def __init__(self, values: Values):
        self._values = values

    def __getitem__(self, sheet: str) -> np.ndarray:
        return self._values.object_array(sheet)

    def __contains__(self, sheet) -> bool:
        return sheet in self._values.numbers

    def __iter__(self):
        return iter(self._values.numbers)

    def keys(self):
        return self._values.numbers.keys()
