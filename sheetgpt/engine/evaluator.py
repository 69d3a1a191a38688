"""The fast engine: recompute every formula of a workbook from its text, vectorized with numpy.

Formula cells are grouped by (sheet, canonical R1C1 text): cells in a group (a ``Unit``)
compute the same formula up to relative references, so each group is evaluated once,
batched over its N cells (``context``, ``values``). A CSE array formula is its own unit
written over its whole range. ``schedule`` orders the units; groups that read each other
are resolved cell by cell.

A formula the engine cannot compute is not the end of the book: its cells show the error value
Excel shows (``#NAME?`` for a formula that cannot be read, an unknown name or function; ``#VALUE!``
for a circular reference, whose cells and the cells waiting on them get it), and the evaluator
records a ``Problem`` naming its cells. ``Values.problems`` carries them to the caller, which
refuses the book or grades the cell (``check``).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ..a1 import ERRORS, MAX_COLS, MAX_ROWS, where
from ..errors import WorkbookError
from . import schedule
from .context import Context
from .functions import FUNCTIONS
from .names import Names
from .parser import Call, Err, Node, Ref, parse_r1c1, walk
from .r1c1 import shift_formula, to_r1c1
from .reader import Book
from .store import MAX_BATCH_ELEMENTS, Store
from .values import BOOL, E_VALUE, ERR_BASE, NUM, Batch, Problem, Values, broadcast, error


@dataclass
class Unit:
    """Cells of one sheet that compute one formula (its R1C1 ``key``), evaluated together."""

    sheet: str
    key: str
    ast: Node
    rows: np.ndarray
    cols: np.ndarray
    array: tuple | None = None  # (r0, c0, r1, c1) of a CSE formula over more than one cell
    top_left: bool = False  # one-cell CSE formulas, grouped: each cell shows its array's top-left value
    reads: list = field(default_factory=list)  # (sheet, r0, c0, r1, c1): what each box's references cover
    boxes: list = field(default_factory=list)  # (r0, c0, r1, c1) rectangles that hold the unit's cells
    refs: list = field(default_factory=list)  # (sheet, Ref) of the formula, sheet resolved


def _fills_on_grid(key: str, rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether every reference of the R1C1 formula ``key`` stays on the grid from each cell."""
    try:
        ast = parse_r1c1(key)
    except WorkbookError:
        return True  # reported with its cell by Evaluator.unit
    for node in walk(ast):
        if type(node) is Ref:
            for r, ra, c, ca in (
                (node.r0, node.r0_abs, node.c0, node.c0_abs),
                (node.r1, node.r1_abs, node.c1, node.c1_abs),
            ):
                if not ra and ((rows + r).min() < 0 or (rows + r).max() >= MAX_ROWS):
                    return False
                if not ca and ((cols + c).min() < 0 or (cols + c).max() >= MAX_COLS):
                    return False
    return True


class Evaluator:
    """Recomputes ``book``: ``units()`` groups its formula cells, ``run()`` evaluates them in order."""

    def __init__(self, book: Book, progress=None, values: bool = True):
        self.book = book
        # values=False: for ``units()`` alone (engine.reach), which needs the sheets' names, not their cells
        self.store = Store(book) if values else _SheetNames(book)
        self.names = Names(book.defined_names)
        self.progress = progress
        self.done = 0
        self.total = 0
        self.problems: list[Problem] = []

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
                    raise WorkbookError(f"{where(name, r, c)}: {e.message}") from None
                if rng is not None and tuple(rng) == (r, c, r, c):
                    cse.setdefault(key, []).append((r, c))
                elif rng is not None:
                    out.append(self.unit(name, key, np.array([r]), np.array([c]), rng))
                else:
                    groups.setdefault(key, []).append((r, c))
            for key, cells in cse.items():
                a = np.array(cells, dtype=np.int64)
                out.append(self.unit(name, key, a[:, 0], a[:, 1], None, top_left=True))
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
                out.append(self.unit(name, key, a[:, 0], a[:, 1], None))
        return out

    def unit(self, sheet: str, key: str, rows: np.ndarray, cols: np.ndarray, rng, top_left: bool = False) -> Unit:
        """The unit of the R1C1 formula ``key`` at ``rows``, ``cols`` (``rng``: a CSE formula's
        range, or None), its names resolved, its functions and references checked. A formula that
        cannot be computed becomes its error value, with a ``Problem`` that names its first cell."""
        try:
            return self._unit(sheet, key, rows, cols, rng, top_left)
        except _Broken as b:
            self._problem(sheet, rows, cols, rng, b.message, b.code)
            u = Unit(sheet, key, Err(b.code), rows, cols, rng, top_left)
            u.boxes = [rng] if rng else schedule.rects(rows, cols)
            return u

    def _problem(self, sheet: str, rows, cols, rng, message: str, code: str) -> None:
        if rng is not None and len(rows) == 1:
            r0, c0, r1, c1 = rng
            rows, cols = (a.ravel() for a in np.mgrid[r0 : r1 + 1, c0 : c1 + 1])
        self.problems.append(Problem(sheet, np.asarray(rows), np.asarray(cols), message, code))

    def _unit(self, sheet: str, key: str, rows: np.ndarray, cols: np.ndarray, rng, top_left: bool) -> Unit:
        try:
            ast = parse_r1c1(key)
        except WorkbookError as e:
            raise _Broken(e.message) from None
        unknown: list[str] = []
        ast = self.names.resolve(ast, sheet, unknown)
        u = Unit(sheet, key, ast, rows, cols, rng, top_left)
        refs = []
        for node in walk(ast):
            if type(node) is Call:
                fn = FUNCTIONS.get(node.name)
                if fn is None:
                    raise _Broken(
                        f"unsupported function {node.name} (the fast engine does not know it); "
                        "check with --engine libreoffice"
                    )
                lo, hi = fn.min_args, fn.max_args
                if not lo <= len(node.args) <= hi:
                    raise _Broken(
                        f"{node.name} takes {lo if lo == hi else f'{lo} to {hi}'} arguments, got {len(node.args)}"
                    )
            elif type(node) is Ref:
                sh = sheet if node.sheet is None else self.store.sheet(node.sheet)
                if sh is None:
                    raise _Broken(f"reference to a sheet that does not exist: {node.sheet!r}", "#REF!")
                refs.append((sh, node))
        u.boxes = [rng] if rng else schedule.rects(rows, cols)
        u.refs = refs
        # (a CSE formula's references are relative to its top-left cell alone; its reads are
        # taken over its whole range, which is more than it reads but never less)
        cells = u.boxes if rng is None else [(int(rows[0]), int(cols[0]), int(rows[0]), int(cols[0]))]
        for _, ref in refs:
            if any(min(schedule.extent(ref, *box)[:2]) < 0 for box in cells):
                raise _Broken("reference off the sheet", "#REF!")
        u.reads = schedule.reads(refs, u.boxes)
        if unknown:  # computed (IFERROR may catch its #NAME?), and reported
            self._problem(
                sheet, rows, cols, rng, f"unknown name {unknown[0]!r} (the book defines no such name)", "#NAME?"
            )
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
                    u.sheet,
                    u.key,
                    u.ast,
                    u.rows[m],
                    u.cols[m],
                    None,
                    u.top_left,
                    schedule.reads(u.refs, [box]),
                    [box],
                    u.refs,
                )
            )
        return out

    @staticmethod
    def _rejoin(parts: list[Unit]) -> list[Unit]:
        """Parts of one unit that are still ordered cell by cell, joined again: cells of the same
        level are then evaluated in one batch (every head of a generating book's attention row)."""
        groups: dict[tuple, list[Unit]] = {}
        for p in parts:
            groups.setdefault((p.sheet, p.key, p.top_left, p.array), []).append(p)
        out = []
        for group in groups.values():
            if len(group) == 1 or group[0].array is not None:
                out.extend(group)
                continue
            u = group[0]
            rows = np.concatenate([p.rows for p in group])
            cols = np.concatenate([p.cols for p in group])
            boxes = [b for p in group for b in p.boxes]
            out.append(
                Unit(u.sheet, u.key, u.ast, rows, cols, None, u.top_left, schedule.reads(u.refs, boxes), boxes, u.refs)
            )
        return out

    # -- evaluation
    def run(self) -> Values:
        t0 = time.perf_counter()
        units = self.units()
        self.total = sum(len(u.rows) for u in units)
        for comp, cyclic in schedule.order(units):
            if not cyclic:
                self._eval_unit(comp[0], comp[0].rows, comp[0].cols)
                continue
            # groups that read each other: first as one group per rectangle, which is often
            # enough to order them (the BPE tab's merge rounds); what still reads itself is
            # ordered cell by cell
            parts = [p for u in comp for p in self._split(u)]
            for sub, still in schedule.order(parts) if len(parts) > len(comp) else [(comp, True)]:
                if still:
                    self.cell_level(self._rejoin(sub))
                else:
                    self._eval_unit(sub[0], sub[0].rows, sub[0].cols)
        return self._values(units, time.perf_counter() - t0)

    def _eval_unit(self, u: Unit, rows, cols) -> None:
        # ranges whose size differs per cell (e.g. SUM($A$1:A5)): split by size
        mixed = [ref for _, ref in u.refs if ref.r0_abs != ref.r1_abs or ref.c0_abs != ref.c1_abs]
        if mixed and len(rows) > 1:
            keys = np.zeros((len(rows), 0), np.int64)
            for ref in mixed:
                r0, c0, r1, c1 = schedule.ref_bounds(ref, rows, cols)
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
        for _, ref in u.refs:
            if ref.r0_abs == ref.r1_abs and ref.c0_abs == ref.c1_abs and not (ref.r0_abs and ref.c0_abs):
                r0, c0, r1, c1 = schedule.ref_bounds(ref, rows[:1], cols[:1])
                area = max(area, int((r1[0] - r0[0] + 1) * (c1[0] - c0[0] + 1)))
        step = max(1, MAX_BATCH_ELEMENTS // area)
        for s in range(0, len(rows), step):
            self._eval_chunk(u, rows[s : s + step], cols[s : s + step])

    def _eval_chunk(self, u: Unit, rows, cols) -> None:
        ctx = Context(self.store, u.sheet, rows, cols, where(u.sheet, int(rows[0]), int(cols[0])))
        try:
            with np.errstate(all="ignore"):
                v = ctx.val(ctx.eval(u.ast))
            if u.array is None and v.shape[1:] != (1, 1) and not u.top_left:
                raise WorkbookError(
                    f"{ctx.where}: formula gives a {v.shape[1]}x{v.shape[2]} array in a plain cell; "
                    "enter it as an array formula"
                )
        except WorkbookError as e:
            message = e.message.removeprefix(ctx.where + ": ")
            self._problem(u.sheet, rows, cols, u.array, message, "#VALUE!")
            v = error((1, 1, 1), E_VALUE)
        if u.array is not None:
            r0, c0, r1, c1 = u.array
            H, W = r1 - r0 + 1, c1 - c0 + 1
            v = broadcast(v, Batch(np.zeros((1, H, W)), np.zeros((1, H, W), np.int8)))[0]
            v = Batch(v.num[:, :H, :W], v.kind[:, :H, :W], None if v.txt is None else v.txt[:, :H, :W])
            rr = np.arange(r0, r1 + 1)[:, None] + np.zeros((1, W), int)
            cc = np.arange(c0, c1 + 1)[None, :] + np.zeros((H, 1), int)
            self.store.write(u.sheet, rr, cc, Batch(v.num[0], v.kind[0], None if v.txt is None else v.txt[0]))
            self.done += H * W
        else:
            B = len(rows)
            flat = Batch(
                np.broadcast_to(v.num[:, 0, 0], (B,)),
                np.broadcast_to(v.kind[:, 0, 0], (B,)),
                None if v.txt is None else np.broadcast_to(v.txt[:, 0, 0], (B,)),
            )
            self.store.write(u.sheet, rows, cols, flat)
            self.done += B
        if self.progress:
            self.progress(self.done, self.total)

    def cell_level(self, comp: list[Unit]) -> None:
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
        src, dst, nodes = schedule.cell_edges(comp, starts, owner, n)  # dst reads src; block nodes n.. (no cells)
        levels, cycle = schedule.cell_levels(nodes, src, dst)
        levels, cycle = levels[:n], [j for j in cycle if j < n]
        unit_of = np.repeat(np.arange(len(comp)), np.diff(starts + [n]))
        if cycle:
            # the cells on the cycle, and those waiting on it, hold #VALUE!; the problem names the cycle's
            by_sheet: dict[str, list] = {}
            for j in cycle:
                u, i = comp[int(unit_of[j])], j - starts[int(unit_of[j])]
                by_sheet.setdefault(u.sheet, []).append((int(u.rows[i]), int(u.cols[i])))
            (sheet, on), *rest = [(sh, np.array(cells).reshape(-1, 2)) for sh, cells in by_sheet.items()]
            self._problem(sheet, on[:, 0], on[:, 1], None, "circular reference", "#VALUE!")
            self.problems[-1].more = [(sh, cells[:, 0], cells[:, 1]) for sh, cells in rest]
            for j in np.flatnonzero(levels < 0).tolist():
                u, i = comp[int(unit_of[j])], j - starts[int(unit_of[j])]
                if u.array is not None:
                    r0, c0, r1, c1 = u.array
                    rr, cc = (a.ravel() for a in np.mgrid[r0 : r1 + 1, c0 : c1 + 1])
                else:
                    rr, cc = u.rows[i : i + 1], u.cols[i : i + 1]
                self.store.write(u.sheet, rr, cc, error(rr.shape, E_VALUE))
                self.done += len(rr)
        index_in_unit = np.arange(n) - np.array(starts)[unit_of]
        order = np.lexsort((index_in_unit, unit_of, levels))
        order = order[levels[order] >= 0]
        key = levels[order] * len(comp) + unit_of[order]
        cuts = np.flatnonzero(np.diff(key)) + 1
        for sel in np.split(order, cuts) if len(order) else []:
            u = comp[int(unit_of[sel[0]])]
            idx = index_in_unit[sel]
            self._eval_unit(u, u.rows[idx], u.cols[idx])

    def _values(self, units: list[Unit], seconds: float) -> Values:
        numbers, kinds, text, errors = {}, {}, {}, {}
        for name in self.book.sheets:
            k = self.store.kind[name]
            if name in self.store.shared:
                numbers[name], kinds[name], text[name], errors[name] = self.store.num[name], k, {}, {}
                continue
            numbers[name] = np.where((k == NUM) | (k == BOOL), self.store.num[name], np.nan)
            kinds[name] = k
            text[name] = self.store.texts(name)
            er = np.nonzero(k >= ERR_BASE)
            errors[name] = {(int(r), int(c)): ERRORS[k[r, c] - ERR_BASE] for r, c in zip(*er)}
        return Values(
            numbers,
            text,
            errors,
            timings={"total": seconds},
            kinds=kinds,
            formula_cells=self.total,
            groups=len(units),
            problems=self.problems,
        )


class _SheetNames:
    """What building units needs of a ``Store``: a sheet's name as the book spells it."""

    def __init__(self, book: Book):
        self.lower = {n.lower(): n for n in book.sheets}

    def sheet(self, name: str) -> str | None:
        return self.lower.get(name.lower())


class _Broken(Exception):
    """A formula that cannot be computed: ``message`` says why, its cells show ``code``."""

    def __init__(self, message: str, code: str = "#NAME?"):
        self.message, self.code = message, code


def evaluate(book: Book, *, progress=None, strict: bool = False) -> Values:
    """Recompute every formula cell of ``book``. ``progress(done, total)`` is called
    after each batch. A formula that cannot be computed shows its error value and is listed in
    ``Values.problems``; ``strict``: raise the first one as a WorkbookError instead."""
    values = Evaluator(book, progress).run()
    if strict and values.problems:
        raise WorkbookError(values.problems[0].text)
    return values
