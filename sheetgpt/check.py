"""Prove a workbook: recompute every formula, compare each stage with the float64 reference.

The check trusts neither the cached values in the file nor the generator's intent. Its
inputs are the book's constants: the weight tabs, the vocab tab, the token texts on the
Prompt tab, the predicting position and the temperature. From those it computes the
reference (``reference.gpt2``); from the formula text it recomputes every cell with an
engine; then, region by region of the book's layout (``sheetgpt.book``), it compares the two.
Each tab module reads back what it holds (``read_back``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from . import exercises, sampling
from .a1 import cell as cell_name
from .book.layout import WEIGHTS, Layout, Region
from .book.tabs import embeddings, guide, neurons, predict, prompt, sample, steering, vocab, weights
from .checkpoint import Model, param_shapes
from .engine import ENGINES, recompute
from .engine.cached import file_values
from .engine.reader import Book, read_workbook
from .engine.values import Values
from .errors import WorkbookError
from .grade import grade
from .reference import gpt2, with_generation_stages, with_selected_position, with_teaching_stages
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


@dataclass
class BookInputs:
    layout: Layout
    texts: list[str]
    ids: list[int]  # -1 where a token text is not in the vocabulary
    predict_after: int
    temperature: float
    weights: dict[str, np.ndarray]
    emb_ids: list[int] = field(default_factory=list)  # Embeddings tab's token cells; -1 = not in the vocabulary
    typed_trace: dict = field(default_factory=dict)  # typed-prompt books: the BPE tab's checked regions
    token_formulas: list[int] = field(default_factory=list)  # token rows whose text a teacher's formula gives
    lookup: dict = field(default_factory=dict)  # vocab text -> id, as the book's id lookup sees it
    generated: list[bool] = field(default_factory=list)  # generating books: rows that hold the row before's argmax
    words: vocab.VocabTab | None = None
    steer: steering.Settings | None = None  # books with a Steering tab: its editable cells
    neuron_block: int = 0  # books with a Neurons tab: the block it shows
    sample: sampling.Settings | None = None  # generating books: the Sample tab's editable cells
    sample_row: int = 0  # the row the Sample tab's view shows


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
    config, T, logits_all, typed = guide.read_back(book)
    layout = Layout(config, T, logits_all, typed, *guide.read_generate(book))
    missing = [t.name for t in layout.tabs if t.name not in book.sheets]
    if missing:
        raise WorkbookError(
            f"the book has no tab {missing[0]!r} (its Guide says n_layer={config.n_layer}); "
            "was a tab deleted or renamed?"
        )
    _check_extent(book, layout)
    words = vocab.read_back(book, layout)
    texts, ids, predict_after, typed_trace = prompt.read_back(book, layout, words)
    temperature = predict.read_back(book, layout)
    params = weights.read_back(book, layout)
    emb_ids = embeddings.read_back(book, words)
    generated = prompt.generated_rows(book, layout, predict_after)
    steer = steering.read_back(book, layout) if layout.steer else None
    neuron_block = neurons.read_back(book, layout) if layout.steer else 0
    sample_settings, sample_row = sample.read_back(book, layout) if layout.generate else (None, 0)
    # a teacher's formula in a token cell; a generated row's own formula is the book's, not a teacher's
    token_formulas = [t for t in prompt.teacher_formulas(book, layout) if not generated[t]]
    return BookInputs(
        layout,
        texts,
        ids,
        predict_after,
        temperature,
        params,
        emb_ids,
        typed_trace,
        token_formulas=token_formulas,
        lookup=words.lookup,
        generated=generated,
        words=words,
        steer=steer,
        neuron_block=neuron_block,
        sample=sample_settings,
        sample_row=sample_row,
    )


def with_token_values(inputs: BookInputs, values: Values) -> BookInputs:
    """The inputs with each teacher's token formula replaced by what the engine computed for its cell."""
    if not inputs.token_formulas:
        return inputs
    texts, ids = list(inputs.texts), list(inputs.ids)
    for t in inputs.token_formulas:
        r, c = prompt.TOP + t, prompt.TEXT_COL
        error = values.errors.get(prompt.NAME, {}).get((r, c))
        texts[t] = prompt.value_text(values.describe(prompt.NAME, r, c)) if error is None else error + "\0"
        ids[t] = inputs.lookup.get(texts[t], -1)
    return replace(inputs, texts=texts, ids=ids)


def reference_trace(inputs: BookInputs) -> dict:
    config = inputs.layout.config
    used = [max(i, 0) for i in inputs.ids]
    model = Model(config, inputs.weights, Path("."))
    ids = list(inputs.ids)
    steer_stages, add = {}, None
    if inputs.steer is not None:
        wte = np.asarray(inputs.weights["wte"], np.float64)
        steer_stages = inputs.steer.stages(inputs.words.lookup, wte, config.n_layer)
        add = steer_stages["steer.add"]
    if any(inputs.generated):  # the reference's own continuation: greedy, or sampled as the Sample tab says
        settings = inputs.sample or sampling.Settings()
        used = sampling.fill(used, inputs.generated, model.params, config, settings, inputs.predict_after, add)
        ids = [u if g else i for i, u, g in zip(ids, used, inputs.generated)]
    trace = gpt2(used, model.params, config, steer=add) | steer_stages
    if inputs.steer is not None:
        trace |= neurons.stages(trace, inputs.layout, inputs.neuron_block, inputs.predict_after)
    trace = with_selected_position(trace, inputs.predict_after, inputs.temperature)
    if inputs.layout.generate:
        trace = with_generation_stages(trace, config.n_layer)
        trace |= sample.stages(trace, inputs.sample, inputs.predict_after, inputs.sample_row)
    trace = with_teaching_stages(
        trace, inputs.weights, config, inputs.predict_after, inputs.emb_ids, embeddings.PAIRS, embeddings.NEAREST
    )
    trace |= inputs.typed_trace
    trace["prompt.ids"] = np.asarray(ids, dtype=np.float64)[:, None]
    return trace


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
        held = np.zeros(want.shape, bool)
        sub = formula_cells[region.top : region.bottom + 1, region.left : region.right + 1][:, cols]
        held[: sub.shape[0], : sub.shape[1]] = sub
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
        got = inputs.weights[name]
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
        if all(n in model.flat and model.flat[n].shape == w.shape for n, w in inputs.weights.items()):
            # The reference is then the checkpoint's own forward pass (on the numbers a book of it
            # stores), so a changed weight also fails the first stage that uses it.
            inputs = replace(inputs, weights={n: stored_values(model.flat[n]) for n in inputs.weights})
    values = recompute(engine, path, book, progress=progress, timeout=timeout, notice=notice)
    trace = reference_trace(with_token_values(inputs, values))
    at = _formula_lookup(book)
    report.formula_cells = sum(len(s.formulas) for s in book.sheets.values())
    tabs = inputs.layout.compute_tabs()
    # An exercise book leaves the stages after its blanks uncached on purpose, and the learner's
    # app caches what it likes: its grade rests on recomputed values alone.
    proves_cache = has_cached_values(book, tabs) and not exercises.read_back(book, inputs.layout)
    cached = file_values(book, [t.name for t in tabs]) if proves_cache else None
    for tab in tabs:
        grid = formula_grid(book, tab.name)
        for region in tab.regions:
            report.stages.append(compare_region(region, values, trace[region.name], at, rtol, grid))
        if cached is not None:
            report.stages.append(cached_stage(tab, book, cached, trace, at, rtol))
    report.exercises = grade(inputs.layout, book, values, inputs.weights, trace, report.stages, rtol)
    report.seconds = time.perf_counter() - started
    return report
