"""Prove a workbook: recompute every formula, compare each stage with the float64 reference.

The check trusts neither the cached values in the file nor the generator's intent. Its
inputs are the book's constants: the weight tabs, the vocab tab, the token texts on the
Prompt tab, the predicting position and the temperature. From those it computes the
reference (``reference.gpt2``); from the formula text it recomputes every cell with an
engine; then, region by region of the book's layout (``sheetgpt.book``), it compares the two.
Each tab module reads back what it holds (``read_back``); ``book.trace.book_trace``, the function
the writer cached its values from, computes the reference from those inputs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from . import cold, exercises
from .a1 import cell as cell_name
from .a1 import parse_range
from .book.layout import GUIDE, WEIGHTS, Layout, Region
from .book.tabs import read_layout
from .book.trace import BookInputs, book_trace, tab_name
from .book.trace import read_inputs as read_tab_inputs
from .checkpoint import Model, param_shapes
from .engine import ENGINES, recompute
from .engine.cached import file_values
from .engine.reader import Book, read_workbook
from .engine.values import Values
from .errors import WorkbookError
from .grade import grade, refuse_problems
from .weight_text import stored_values


@dataclass
class StageResult:
    stage: str
    tab: str
    cells: int
    max_abs: float
    max_rel: float
    passed: bool
    first_bad: dict | None = None  # {"cell", "formula", "got", "expected"}
    note: str = ""  # exercise books: "exercise: wrong", "follows from exercise h.0.ln_1.var", ... (grade.py)


@dataclass
class CheckReport:
    path: str
    engine: str
    rtol: float
    stages: list[StageResult] = field(default_factory=list)
    weights: list[dict] = field(default_factory=list)  # --model comparisons
    seconds: float = 0.0
    formula_cells: int = 0
    exercises: list[dict] = field(default_factory=list)  # exercise books: one grade per exercise (grade.py)

    @property
    def passed(self) -> bool:
        """Something was compared (a stage or a weight tab) and all of it matched: a report that
        compared nothing proves nothing."""
        if not self.stages and not self.weights:
            return False
        return all(s.passed for s in self.stages) and all(w["passed"] for w in self.weights)

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        return json.dumps(data, indent=2, default=_jsonable)

    def to_junit(self) -> str:
        cases = []
        for s in self.stages:
            body = ""
            if not s.passed:
                msg = failure_text(s)
                body = f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>"
            cases.append(
                f'  <testcase classname={quoteattr(s.tab)} name={quoteattr(s.stage)} time="0">{body}</testcase>'
            )
        for w in self.weights:
            body = "" if w["passed"] else f"<failure message={quoteattr(w['message'])}/>"
            cases.append(f'  <testcase classname="weights" name={quoteattr(w["param"])} time="0">{body}</testcase>')
        failures = sum(not s.passed for s in self.stages) + sum(not w["passed"] for w in self.weights)
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr("sheetgpt check " + self.path)} '
            f'tests="{len(cases)}" failures="{failures}" time="{self.seconds:.3f}">\n'
            + "\n".join(cases)
            + "\n</testsuite>\n"
        )


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def failure_text(s: StageResult) -> str:
    if s.note.startswith(("follows from", "right for its inputs", "exercise: not done")):
        return f"{s.stage}: {s.note}"
    b = s.first_bad or {}
    if b.get("reason") == NOT_A_FORMULA:
        return (
            f"{s.stage}: {b.get('cell')} holds a {NOT_A_FORMULA} ({b.get('got')!r}; the layout computes it, "
            f"expected {b.get('expected')!r}); {b.get('count')} such cells"
        )
    stage = f"{s.stage} ({b['region']})" if b.get("region") else s.stage
    return (
        f"{stage}: first wrong cell {b.get('cell')} = {b.get('formula')!s}: {b.get('source', 'recomputed')} "
        f"{b.get('got')!r}, expected {b.get('expected')!r} (max relative error {s.max_rel:.3g})"
    )


NOT_A_FORMULA = "value, not a formula"
CACHED = "cached"  # the stage, one per tab, that proves the values the file stores


# ------------------------------------------------------------------ reading the book's inputs


SPARE_CELLS = 4_000_000  # cells a book may use beyond twice what sheetgpt writes (notes, a scratch tab)


def _check_extent(book: Book, layout: Layout) -> None:
    """Refuse a book whose sheets span far more cells than its layout writes.

    The engines hold each sheet as dense arrays of its used range, so one stray cell at
    XFD1048576 would ask for 128 GiB. The Guide's sizes must be backed by weight tabs that
    really hold that many cells, and then the used ranges may total at most twice the
    layout's cells plus SPARE_CELLS.
    """
    expected = 0
    for tab in layout.tabs:
        if tab.kind == WEIGHTS:
            rows, cols = tab.shape
            sheet = book.sheets[tab.name]
            held = sheet.n_numbers + len(sheet.strings) + len(sheet.booleans) + len(sheet.errors) + len(sheet.formulas)
            if held < rows * cols:
                raise WorkbookError(
                    f"weight tab {tab.name!r} holds {held:,} cells, expected {rows}x{cols} "
                    f"(the Guide says n_embd={layout.config.n_embd}, vocab_size={layout.config.vocab_size})"
                )
            expected += rows * cols
        elif tab.regions:
            expected += (max(r.bottom for r in tab.regions) + 2) * max(max(r.right for r in tab.regions) + 1, 10)
        else:
            expected += (max(layout.config.vocab_size, len(layout.tabs)) + 40) * 3  # Guide, vocab
    used = {name: s.dims[0] * s.dims[1] for name, s in book.sheets.items()}
    if sum(used.values()) > 2 * expected + SPARE_CELLS:
        name = max(used, key=used.get)
        s = book.sheets[name]
        raise WorkbookError(
            f"sheet {name!r} spans {s.dims[0]:,} rows x {s.dims[1]:,} columns, far more than a "
            f"sheetgpt book of this size uses; is there a stray cell at {cell_name(s.dims[0] - 1, s.dims[1] - 1)}?"
        )


def read_inputs(book: Book) -> BookInputs:
    """The book's layout (from its Guide) and every tab's inputs, as the book holds them."""
    layout = read_layout(book)
    missing = [t.name for t in layout.tabs if t.name not in book.sheets]
    if missing:
        raise WorkbookError(
            f"the book has no tab {missing[0]!r} (its Guide says n_layer={layout.config.n_layer}); "
            "was a tab deleted or renamed?"
        )
    _check_extent(book, layout)
    return read_tab_inputs(layout, book)


def with_token_values(inputs: BookInputs, values: Values) -> BookInputs:
    """The inputs with those that are formulas (a teacher's token formula) as the engine computed them."""
    for module in inputs.layout.present:
        name = tab_name(module)
        if hasattr(module, "recomputed") and name in inputs:
            inputs = inputs.replace(name, module.recomputed(inputs[name], values, inputs))
    return inputs


# ------------------------------------------------------------------ comparison


def compare_region(
    region: Region,
    values: Values,
    expected: np.ndarray,
    formulas_at: Callable,
    rtol: float,
    formula_cells: np.ndarray | None = None,
) -> StageResult:
    """One stage: ``values`` against the reference over ``region``. ``formula_cells``: the tab's
    boolean grid of cells that hold a formula; given, a computed cell without one fails the stage
    as a "value, not a formula" (a pasted value proves nothing)."""
    want = region.grid(expected)
    got = values.number_grid(region)
    cols = region.columns()
    want, got = want[:, cols], got[:, cols]
    blank = np.isnan(want)  # cells the sheet leaves blank (masked attention scores)
    scale = float(np.nanmax(np.abs(want))) if (~blank).any() else 0.0
    scale = scale or 1.0
    err = np.where(blank, 0.0, np.abs(got - want))
    err = np.where(~blank & np.isnan(got), np.inf, err)
    bad_blank = blank & ~np.isnan(got)
    rel = err / scale
    failed = (rel > rtol) | bad_blank
    max_abs = float(np.max(err)) if err.size else 0.0
    pasted = np.zeros_like(blank)
    if formula_cells is not None:
        held = np.zeros((region.rows, region.width), bool)  # a sheet narrower than the region holds no formula there
        sub = formula_cells[region.top : region.bottom + 1, region.left : region.right + 1]
        held[: sub.shape[0], : sub.shape[1]] = sub
        held = held[:, cols]
        pasted = ~blank & ~held & ~np.isnan(got)  # a number where a formula belongs (empty: a wrong value)
    result = StageResult(
        region.name,
        region.tab,
        int(want.size),
        max_abs,
        float(np.max(rel)) if rel.size else 0.0,
        not failed.any() and not pasted.any(),
    )
    first = np.argwhere(failed | pasted)[0] if (failed | pasted).any() else None
    if first is not None and pasted[first[0], first[1]]:
        i, k = (int(x) for x in first)
        r, c = region.top + i, region.left + cols[k]
        result.first_bad = {
            "cell": f"'{region.tab}'!{cell_name(r, c)}",
            "formula": formulas_at(region.tab, r, c),
            "got": values.describe(region.tab, r, c),
            "expected": float(want[i, k]),
            "reason": NOT_A_FORMULA,
            "count": int(pasted.sum()),
        }
    elif failed.any():
        i, k = (int(x) for x in np.argwhere(failed)[0])
        r, c = region.top + i, region.left + cols[k]
        exp_value = None if blank[i, k] else float(want[i, k])
        result.first_bad = {
            "cell": f"'{region.tab}'!{cell_name(r, c)}",
            "formula": formulas_at(region.tab, r, c),
            "got": values.describe(region.tab, r, c),
            "expected": exp_value if exp_value is not None else "blank (masked)",
        }
    return result


def formula_grid(book: Book, sheet: str) -> np.ndarray:
    """Boolean [rows, cols] of the cells of ``sheet`` that hold a formula (each cell of an array range)."""
    s = book.sheets[sheet]
    grid = np.zeros(s.dims, bool)
    f = s.formulas
    if hasattr(f, "shared"):
        grid[f.rows, f.cols] = True
        for _r, _c, _t, rs, cs in f.shared:
            grid[rs, cs] = True
        arrays = f.arrays
    else:
        arrays = []
        for r, c, _t, ref in f:
            if ref is None:
                grid[r, c] = True
            else:
                arrays.append((r, c, _t, ref))
    for _r, _c, _t, (r0, c0, r1, c1) in arrays:
        grid[r0 : r1 + 1, c0 : c1 + 1] = True
    return grid


def cached_stage(tab, book: Book, cached: Values, trace: dict, at: Callable, rtol: float) -> StageResult:
    """The values the file stores for ``tab``'s regions (what an app shows before recalculating),
    against the reference: one stage per tab, its first wrong cell named."""
    results = [compare_region(r, cached, trace[r.name], at, rtol) for r in tab.regions]
    out = StageResult(
        CACHED,
        tab.name,
        sum(r.cells for r in results),
        max(r.max_abs for r in results),
        max(r.max_rel for r in results),
        all(r.passed for r in results),
    )
    bad = next((r for r in results if not r.passed), None)
    if bad is not None:
        out.first_bad = dict(bad.first_bad, source="cached", region=bad.stage)
    return out


def has_cached_values(book: Book, tabs) -> bool:
    """Whether the file stores any cached formula result in ``tabs`` (openpyxl, for one, writes none;
    an app that writes none also asks for a full recalculation on load)."""
    return any(len(book.sheets[t.name].cached) for t in tabs)


def _rc(cell: str) -> tuple[int, int]:
    """(row, col) of "'Sheet'!B7"."""
    r0, c0, _r1, _c1 = parse_range(cell.rpartition("!")[2])
    return r0, c0


def _formula_lookup(book: Book) -> Callable:
    index: dict = {}

    def at(sheet: str, r: int, c: int):
        if sheet not in index:
            table = {}
            for row, col, text, ref in book.sheets[sheet].formulas:
                if ref is None:
                    table[(row, col)] = "=" + text
                else:
                    r0, c0, r1, c1 = ref
                    for rr in range(r0, r1 + 1):
                        for cc in range(c0, c1 + 1):
                            table[(rr, cc)] = "{=" + text + "}"
            index[sheet] = table
        return index[sheet].get((r, c), "(no formula: a constant or empty cell)")

    return at


def check_weights(inputs: BookInputs, model: Model) -> list[dict]:
    """Each weight tab must hold exactly the checkpoint's float32 numbers."""
    out = []
    config = inputs.layout.config
    for name, _shape in param_shapes(config).items():
        if name not in model.flat:
            out.append({"param": name, "passed": False, "message": f"{name}: not in the checkpoint {model.path}"})
            continue
        want = model.flat[name]
        got = inputs["weights"][name]
        if want.shape != got.shape:
            out.append(
                {
                    "param": name,
                    "passed": False,
                    "message": f"{name}: the book has shape {list(got.shape)}, the checkpoint {list(want.shape)}",
                }
            )
            continue
        diff = got.astype(want.dtype) != want
        if diff.any():
            idx = tuple(int(x) for x in np.argwhere(diff)[0])
            r, c = (0, idx[0]) if len(idx) == 1 else idx
            out.append(
                {
                    "param": name,
                    "passed": False,
                    "message": f"{name}: '{name}'!{cell_name(r, c)} holds {float(got[idx])!r}, the checkpoint "
                    f"{float(want[idx])!r} ({int(diff.sum())} cells differ)",
                }
            )
        else:
            out.append({"param": name, "passed": True, "message": f"{name}: {want.size} numbers equal"})
    return out


def check_book(
    path: str | Path,
    *,
    engine: str = "fast",
    rtol: float = 1e-9,
    model: Model | None = None,
    progress=None,
    timeout: float = 1800,
    notice=None,
) -> CheckReport:
    started = time.perf_counter()
    path = Path(path)
    if engine not in ENGINES:
        raise WorkbookError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    book = read_workbook(path)
    inputs = read_inputs(book)
    report = CheckReport(str(path), engine, rtol)
    if model is not None:
        report.weights = check_weights(inputs, model)
        weights = inputs["weights"]
        if all(n in model.flat and model.flat[n].shape == w.shape for n, w in weights.items()):
            # The reference is then the checkpoint's own forward pass (on the numbers a book of it
            # stores), so a changed weight also fails the first stage that uses it.
            inputs = inputs.replace("weights", {n: stored_values(model.flat[n]) for n in weights})
    values = recompute(engine, path, book, progress=progress, timeout=timeout, notice=notice)
    refuse_problems(inputs.layout, book, values)  # a formula no engine could compute, outside any exercise
    trace = book_trace(with_token_values(inputs, values))
    at = _formula_lookup(book)
    report.formula_cells = sum(len(s.formulas) for s in book.sheets.values())
    tabs = inputs.layout.compute_tabs()
    # An exercise book's cached values are proven while nobody has filled it (``cold.prove``: "fill
    # exercise X first" where a value waits on a blank); once the learner's app saved it, it caches
    # what it likes, and the grade rests on recomputed values alone.
    names = exercises.read_back(book, inputs.layout)
    proves_cache = has_cached_values(book, tabs) and not names
    cached = file_values(book, [t.name for t in tabs]) if proves_cache else None
    waits = None
    if names and has_cached_values(book, tabs) and cold.unfilled(book, inputs.layout, names):
        waits = cold.waiting(book, inputs.layout, names)
    guide = next(t.module for t in inputs.layout.tabs if t.kind == GUIDE)
    sentinel = {(guide.NAME, guide.SENTINEL_ROW, 1)}

    def cold_stage(name: str) -> None:
        res = cold.prove(name, inputs.layout, book, values, trace, *waits, rtol, sentinel)
        if res is not None:
            report.stages.append(StageResult(CACHED, name, res["cells"], res["max_abs"], res["max_rel"], res["passed"]))
            bad = res["first_bad"]
            report.stages[-1].first_bad = bad and dict(bad, source="cached", formula=at(name, *_rc(bad["cell"])))

    for tab in tabs:
        grid = formula_grid(book, tab.name)
        for region in tab.regions:
            report.stages.append(compare_region(region, values, trace[region.name], at, rtol, grid))
        if cached is not None:
            report.stages.append(cached_stage(tab, book, cached, trace, at, rtol))
        elif waits is not None:
            cold_stage(tab.name)
    if waits is not None:  # the tabs without stages (the Guide): their formulas' cached values
        for tab in inputs.layout.tabs:
            if not tab.regions and tab.kind != WEIGHTS:
                cold_stage(tab.name)
    report.exercises = grade(inputs.layout, book, values, inputs["weights"], trace, report.stages, rtol)
    report.seconds = time.perf_counter() - started
    return report
