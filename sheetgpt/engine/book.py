"""The data model of a read workbook: ``Book`` (its sheets, in order, and its defined names) and
``Sheet`` (one worksheet's constants, formulas and cached values), with the compact containers a
sheet keeps its formulas (``Formulas``) and cached values (``LazyDict``) in.

Every part of sheetgpt that reads a book works on these; ``reader.read_workbook`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .markup import unescape
from .r1c1 import shift_formula


class Sheet:
    """One worksheet. Rows and columns are 0-based.

    numbers: (rows int32[n], cols int32[n], values float64[n]) numeric constants
    strings: {(row, col): text} constant text (shared or inline strings)
    booleans / errors: {(row, col): bool | '#N/A'} constant booleans and error literals
    formulas: [(row, col, text_without_equals, array_ref | None)]; array_ref is the
        0-based inclusive (r0, c0, r1, c1) of a CSE array formula (given once, at its
        top-left cell); shared formulas are expanded into each cell's own text when the
        list is iterated (the reader keeps them as one ``Formulas`` unit)
    cached: {(row, col): cached text from <v>} of formula cells (never trusted)
    cached_types: {(row, col): 'str' | 'b' | 'e' | ...} the t= of formula cells whose cached
        value is not a number (absent: a number)
    dims: (n_rows, n_cols) = 1 + the largest row and column that hold anything

    A mostly-numeric sheet (a weight tab) keeps its numbers as one float64 grid with NaN
    where there is no number (numbers are always finite, so this loses nothing);
    ``numbers`` is then derived on first use and ``dense()`` returns the grid read-only.
    """

    def __init__(
        self,
        name: str,
        numbers=None,
        strings=None,
        booleans=None,
        errors=None,
        formulas=None,
        cached=None,
        cached_types=None,
        dims: tuple[int, int] = (0, 0),
        grid: np.ndarray | None = None,
        has_gaps: bool = True,
    ):
        self.name = name
        self._numbers = numbers
        self._grid = grid
        self._has_gaps = has_gaps
        self.strings = {} if strings is None else strings
        self.booleans = {} if booleans is None else booleans
        self.errors = {} if errors is None else errors
        self.formulas = [] if formulas is None else formulas
        self.cached = {} if cached is None else cached
        self.cached_types = {} if cached_types is None else cached_types
        self.dims = dims

    @property
    def numbers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._numbers is None:
            g = self._grid
            if g is None:
                self._numbers = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
            else:
                r, c = np.nonzero(~np.isnan(g))
                self._numbers = (r.astype(np.int32), c.astype(np.int32), g[r, c])
        return self._numbers

    @numbers.setter
    def numbers(self, value) -> None:
        self._numbers, self._grid = value, None

    def dense(self) -> np.ndarray:
        """float64 [n_rows, n_cols] of the numeric constants, NaN elsewhere."""
        if self._grid is not None and self._grid.shape == tuple(self.dims):
            view = self._grid.view()
            view.flags.writeable = False
            return view
        out = np.full(self.dims, np.nan)
        r, c, v = self.numbers
        out[r, c] = v
        return out

    @property
    def full_grid(self) -> np.ndarray | None:
        """The grid, if every cell of ``dims`` holds a number (else None); read-only."""
        g = self._grid
        if g is None or g.shape != tuple(self.dims) or self._has_gaps:
            return None
        return self.dense()

    @property
    def n_numbers(self) -> int:
        if self._numbers is None and self._grid is not None:
            return int(self._grid.size - np.isnan(self._grid).sum()) if self._has_gaps else self._grid.size
        return len(self.numbers[2])

    def __repr__(self) -> str:
        return f"Sheet({self.name!r}, dims={self.dims}, numbers={self.n_numbers}, formulas={len(self.formulas)})"


@dataclass
class Book:
    sheet_names: list[str]
    sheets: dict[str, Sheet]
    defined_names: dict[str, str]  # name -> its formula text; a sheet-scoped name is keyed 'Sheet!name'


class Formulas:
    """The formula cells of one sheet, kept compact.

    plain cells: ``rows``/``cols`` (int arrays) and ``texts`` (list of str);
    ``arrays``: [(row, col, text, (r0, c0, r1, c1))] CSE formulas;
    ``shared``: [(master_row, master_col, master_text, rows, cols)] shared formulas, one
    entry per group with its member cells (the master included).
    Iterating yields ``(row, col, text, array_ref)`` per cell as ``Sheet.formulas`` always
    did, shared members expanded with ``shift_formula``.
    """

    def __init__(self):
        self._r: list = []  # ints or int arrays
        self._c: list = []
        self.texts: list[str] = []
        self.arrays: list = []
        self.shared: list = []
        self._by_si: dict = {}

    @property
    def rows(self) -> np.ndarray:
        self._pack()
        return self._r[0] if self._r else np.zeros(0, np.int64)

    @property
    def cols(self) -> np.ndarray:
        self._pack()
        return self._c[0] if self._c else np.zeros(0, np.int64)

    def _pack(self) -> None:
        if len(self._r) > 1 or (self._r and not isinstance(self._r[0], np.ndarray)):
            self._r = [np.concatenate([np.atleast_1d(np.asarray(x, np.int64)) for x in self._r])]
            self._c = [np.concatenate([np.atleast_1d(np.asarray(x, np.int64)) for x in self._c])]

    def add_plain(self, r, c, text: str) -> None:
        self._r.append(r)
        self._c.append(c)
        self.texts.append(text)

    def add_plain_many(self, rows: np.ndarray, cols: np.ndarray, texts: list[str]) -> None:
        if len(texts):
            self._r.append(rows.astype(np.int64))
            self._c.append(cols.astype(np.int64))
            self.texts.extend(texts)

    def add_shared_master(self, si, r: int, c: int, text: str) -> None:
        group = (r, c, text, [r], [c])
        self._by_si[si] = group
        self.shared.append(group)

    def add_shared_member(self, si, r: int, c: int) -> bool:
        return self.add_shared_members(si, [r], [c])

    def add_shared_members(self, si, rows: list[int], cols: list[int]) -> bool:
        group = self._by_si.get(si)
        if group is None:
            return False
        group[3].extend(rows)
        group[4].extend(cols)
        return True

    def __len__(self) -> int:
        return len(self.texts) + len(self.arrays) + sum(len(g[3]) for g in self.shared)

    def __iter__(self):
        rows, cols = self.rows, self.cols
        for r, c, t in zip(rows.tolist(), cols.tolist(), self.texts):
            yield (r, c, t, None)
        for r0, c0, text, rs, cs in self.shared:
            for r, c in zip(rs, cs):
                yield (r, c, text if (r, c) == (r0, c0) else shift_formula(text, r - r0, c - c0), None)
        yield from self.arrays

    def __bool__(self) -> bool:
        return len(self) > 0


class LazyDict(dict):
    """A dict filled on first use from columnar data (cached values of formula cells)."""

    def __init__(self, filled: dict | None = None, parts: list | None = None):
        super().__init__(filled or {})
        self._parts: list = parts or []

    def pending(self) -> bool:
        """Whether values are still waiting in columnar form (so that no key is listed yet)."""
        return bool(self._parts)

    def add_many(self, rows, cols, values: list) -> None:
        self._parts.append((rows, cols, values))

    def _fill(self) -> None:
        parts, self._parts = self._parts, []
        for rows, cols, values in parts:
            for r, c, v in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist(), values):
                if v is not None:
                    dict.__setitem__(self, (r, c), unescape(v))

    def _filled(name):
        def method(self, *a, **k):
            if self._parts:
                self._fill()
            return getattr(dict, name)(self, *a, **k)

        return method

    for _m in (
        "__getitem__",
        "__contains__",
        "__iter__",
        "__len__",
        "get",
        "items",
        "keys",
        "values",
        "__eq__",
        "__repr__",
        "copy",
        "pop",
        "setdefault",
    ):
        locals()[_m] = _filled(_m)
    del _m, _filled

    def __reduce__(self):
        return (LazyDict, (dict(dict.items(self)), self._parts))
