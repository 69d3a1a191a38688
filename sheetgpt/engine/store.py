"""The cell values of every sheet while a book is recomputed, and lazy references into them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkbookError
from .reader import Book
from .values import BOOL, E_VALUE, EMPTY, ERR, NUM, TEXT, Batch


@dataclass
class CellRange:
    """A lazy reference, one per cell of a batch: top-left r0/c0 (int arrays [B], B may be 1) and size h x w."""

    sheet: str
    r0: np.ndarray
    c0: np.ndarray
    h: int
    w: int


MAX_BATCH_ELEMENTS = 4_000_000  # cells x range area materialised at once
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
            grid = sh.full_grid
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
            for r, c in sh.strings:
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

    def clip(self, rng: CellRange) -> CellRange:
        """The range without its rows and columns beyond the sheet's extent (all empty), keeping
        at least one of each: for functions that skip empty cells (SUM, AND, MATCH ...), the same
        value from a range as large as ``wte!A1:XFD1048576``."""
        R, C = self.kind[rng.sheet].shape
        h = min(rng.h, max(1, R - int(rng.r0.min())))
        w = min(rng.w, max(1, C - int(rng.c0.min())))
        return rng if (h, w) == (rng.h, rng.w) else CellRange(rng.sheet, rng.r0, rng.c0, h, w)

    def check_area(self, rng: CellRange, where: str) -> None:
        """Refuse to materialise a range that reaches far beyond its sheet's extent (memory is
        bounded by what the sheets hold, not by what a reference names)."""
        R, C = self.kind[rng.sheet].shape
        if rng.h * rng.w > R * C + MAX_BATCH_ELEMENTS:
            raise WorkbookError(
                f"{where}: a reference of {rng.h:,} x {rng.w:,} cells reaches far beyond the {R:,} x {C:,} "
                f"cells that sheet {rng.sheet!r} holds; refusing it"
            )

    def gather(self, sheet: str, rows: np.ndarray, cols: np.ndarray) -> Batch:
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
        return Batch(num, kind, self._texts(sheet, kind, rows, cols))

    def block(self, sheet: str, r0: int, c0: int, h: int, w: int) -> Batch:
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
        return Batch(num, kind, txt)

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

    def write(self, sheet: str, rows: np.ndarray, cols: np.ndarray, v: Batch) -> None:
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
