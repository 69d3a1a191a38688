"""Evaluating a formula's AST over a batch of cells that share it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..a1 import MAX_COLS, MAX_ROWS
from ..errors import WorkbookError
from .functions import FUNCTIONS
from .operators import binary
from .parser import Bin, Bool, Call, Err, Missing, Neg, Node, Num, Pct, Ref, Str, operands
from .store import CellRange, Store
from .values import BOOL, ERR, TEXT, Batch, const, empty, numbers, to_num


class Context:
    """The cells (``rows``, ``cols``: int arrays [B]) of one sheet that a formula is evaluated for;
    ``where`` names the first of them in messages."""

    def __init__(self, store: Store, sheet: str, rows: np.ndarray, cols: np.ndarray, where: str):
        self.store = store
        self.sheet = sheet
        self.rows = rows
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

    def ref(self, node: Ref) -> CellRange:
        sheet = self._sheet_of(node.sheet)
        R0 = np.array([node.r0]) if node.r0_abs else self.rows + node.r0
        R1 = np.array([node.r1]) if node.r1_abs else self.rows + node.r1
        C0 = np.array([node.c0]) if node.c0_abs else self.cols + node.c0
        C1 = np.array([node.c1]) if node.c1_abs else self.cols + node.c1
        lo_r, hi_r = np.minimum(R0, R1), np.maximum(R0, R1)
        lo_c, hi_c = np.minimum(C0, C1), np.maximum(C0, C1)
        h, w = hi_r - lo_r, hi_c - lo_c
        if (h != h[0]).any() or (w != w[0]).any():  # pragma: no cover - split upstream
            raise WorkbookError(f"{self.where}: internal: range size varies inside a batch")
        if (lo_r < 0).any() or (lo_c < 0).any():
            raise WorkbookError(f"{self.where}: reference off the sheet")
        return CellRange(sheet, lo_r, lo_c, int(h[0]) + 1, int(w[0]) + 1)

    def val(self, x: Batch | CellRange | None) -> Batch:
        """What ``eval`` gave, as values: a reference read from the store, a missing argument empty."""
        if isinstance(x, Batch):
            return x
        if x is None:
            return empty()
        if x.h == MAX_ROWS or x.w == MAX_COLS:  # a whole column or row: its cells beyond the sheet are empty
            x = self.store.clip(x)
        self.store.check_area(x, self.where)
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
    def eval(self, node: Node) -> Batch | CellRange | None:
        """The node's value: a Batch, a CellRange for a reference (functions such as INDEX and
        SUMPRODUCT read ranges lazily), or None for a missing argument. Operands are evaluated
        left to right, with a stack of their own rather than recursion (a formula of 8,192
        characters can be a chain of 4,096 operators)."""
        todo: list = [node]  # nodes to evaluate, and _Apply markers of those whose operands are done
        done: list = []  # values of evaluated operands, in order
        while todo:
            node = todo.pop()
            t = type(node)
            if t is _Apply:
                done.append(self._apply(node.node, done))
            elif t is Bin or t is Call or t is Neg or t is Pct:
                todo.append(_Apply(node))
                todo.extend(reversed(operands(node)))
            else:
                done.append(self._leaf(node))
        return done[0]

    def _leaf(self, node: Node) -> Batch | CellRange | None:
        t = type(node)
        if t is Num:
            return const(node.value)
        if t is Str:
            return const(np.nan, TEXT, node.value)
        if t is Bool:
            return const(float(node.value), BOOL)
        if t is Err:
            return const(0.0, ERR[node.code])
        if t is Ref:
            return self.ref(node)
        assert t is Missing
        return None

    def _apply(self, node: Node, done: list) -> Batch | CellRange:
        """An operator or a call on its operands' values, taken from the end of ``done``."""
        t = type(node)
        if t is Bin:
            b = self.val(done.pop())
            return binary(node.op, self.val(done.pop()), b)
        if t is Call:
            args = done[len(done) - len(node.args) :]
            del done[len(done) - len(node.args) :]
            return FUNCTIONS[node.name].run(self, args)
        num, err = to_num(self.val(done.pop()))
        return numbers(-num if t is Neg else num / 100.0, err)


class _Apply(NamedTuple):
    """A marker on the evaluation stack: ``node``'s operands have been evaluated."""

    node: Node
