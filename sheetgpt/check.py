"""Prove a workbook: recompute every formula, compare each stage with the float64 reference.

The check trusts neither the cached values in the file nor the generator's intent. Its
inputs are the book's constants: the weight tabs, the vocab tab, the token texts on the
Prompt tab, the predicting position and the temperature. From those it computes the
reference (``reference.gpt2``); from the formula text it recomputes every cell with an
engine; then, region by region of ``stages.Layout``, it compares the two.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .checkpoint import Model, param_shapes
from .config import GPT2Config
from .errors import WorkbookError
from .reference import gpt2, with_selected_position, with_teaching_stages
from .stages import PROMPT_TOP, WEIGHTS, Layout, Region, weight_tab_shape
from .weight_text import stored_values
from .xlsx_reader import Book, cell_name, read_workbook

ENGINES = ("fast", "formulas", "libreoffice")
FORMULAS_MAX_CELLS = 60_000  # above this the formulas package takes minutes and gigabytes


@dataclass
class StageResult:
    stage: str
    tab: str
    cells: int
    max_abs: float
    max_rel: float
    passed: bool
    first_bad: dict | None = None  # {"cell", "formula", "got", "expected"}


@dataclass
class CheckReport:
    path: str
    engine: str
    rtol: float
    stages: list[StageResult] = field(default_factory=list)
    weights: list[dict] = field(default_factory=list)  # --model comparisons
    seconds: float = 0.0
    formula_cells: int = 0

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
                msg = _failure_text(s)
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


def _failure_text(s: StageResult) -> str:
    b = s.first_bad or {}
    return (
        f"{s.stage}: first wrong cell {b.get('cell')} = {b.get('formula')!s}: recomputed {b.get('got')!r}, "
        f"expected {b.get('expected')!r} (max relative error {s.max_rel:.3g})"
    )


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


def _guide_config(book: Book) -> tuple[GPT2Config, int, bool]:
    guide = book.sheets.get(Layout.GUIDE)
    if guide is None:
        raise WorkbookError("the book has no Guide tab; it was not made by sheetgpt build")
    labels = {text: (r, c) for (r, c), text in guide.strings.items() if c == 0}
    values = dict(zip(zip(guide.numbers[0].tolist(), guide.numbers[1].tolist()), guide.numbers[2].tolist()))

    def get(label):
        if label not in labels or (labels[label][0], 1) not in values:
            raise WorkbookError(f"Guide tab: missing the number beside {label!r}; the configuration table is damaged")
        return values[(labels[label][0], 1)]

    ints = {k: get(k) for k in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "token rows")}
    for k, v in ints.items():
        if v != int(v) or v < 1:
            raise WorkbookError(f"Guide tab: {k} must be a positive whole number, got {v!r}")
    if ints["n_layer"] > len(book.sheet_names):  # before laying out n_layer block tabs
        raise WorkbookError(
            f"Guide tab: n_layer {ints['n_layer']:g} but the book has only {len(book.sheet_names)} tabs"
        )
    if ints["token rows"] > ints["n_positions"]:
        raise WorkbookError(
            f"Guide tab: token rows {ints['token rows']:g} is more than n_positions {ints['n_positions']:g}"
        )
    config = GPT2Config(
        n_layer=int(ints["n_layer"]),
        n_head=int(ints["n_head"]),
        n_embd=int(ints["n_embd"]),
        n_positions=int(ints["n_positions"]),
        vocab_size=int(ints["vocab_size"]),
        layer_norm_epsilon=float(get("layer_norm_epsilon")),
    )
    try:
        config.validate("Guide tab")
    except Exception as exc:
        raise WorkbookError(str(getattr(exc, "message", exc))) from None
    return config, int(ints["token rows"]), bool(get("logits for every position"))


def _number(book: Book, sheet: str, r: int, c: int, what: str) -> float:
    s = book.sheets[sheet]
    hit = np.nonzero((s.numbers[0] == r) & (s.numbers[1] == c))[0]
    if not len(hit):
        found = s.strings.get((r, c))
        detail = f"text {found!r}" if found is not None else "nothing (or a formula)"
        raise WorkbookError(f"{sheet}!{cell_name(r, c)} ({what}) must hold a number, found {detail}")
    return float(s.numbers[2][hit[0]])


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
    config, T, logits_all = _guide_config(book)
    layout = Layout(config, T, logits_all, _guide_typed(book))
    missing = [t.name for t in layout.tabs if t.name not in book.sheets]
    if missing:
        raise WorkbookError(
            f"the book has no tab {missing[0]!r} (its Guide says n_layer={config.n_layer}); "
            "was a tab deleted or renamed?"
        )
    _check_extent(book, layout)
    vocab = book.sheets[layout.VOCAB]
    display = [vocab.strings.get((i, 1)) for i in range(config.vocab_size)]
    lookup = {}
    for i, text in enumerate(display):
        if text is not None:
            lookup.setdefault(text, i)
    prompt = book.sheets[layout.PROMPT]
    texts = []
    for t in range(T):
        text = prompt.strings.get((PROMPT_TOP + t, layout.PROMPT_TEXT_COL))
        texts.append("" if text is None else text)
    ids = [lookup.get(text, -1) for text in texts]
    typed = _typed_inputs(book, layout, lookup) if layout.typed else None
    if typed:
        texts, ids = typed["texts"], typed["ids"]
    predict_after = (
        typed["predict_after"]
        if typed
        else _number(book, layout.PROMPT, *layout.PREDICT_AFTER, "predict after position")
    )
    if predict_after != int(predict_after) or not 0 <= predict_after < T:
        raise WorkbookError(
            f"Prompt!C3 (predict after position) must be a whole number from 0 to {T - 1}, got {predict_after!r}"
        )
    temperature = _number(book, layout.PREDICT, *layout.TEMPERATURE, "temperature")
    if not temperature > 0:
        raise WorkbookError(f"Predict!C3 (temperature) must be above 0, got {temperature!r}")
    weights = {}
    for name, shape in param_shapes(config).items():
        sheet = book.sheets[name]
        rows, cols = weight_tab_shape(shape)
        dense = sheet.dense()
        if dense.shape[0] < rows or dense.shape[1] < cols:
            raise WorkbookError(
                f"weight tab {name!r} is {dense.shape[0]}x{dense.shape[1]} cells, expected {rows}x{cols}"
            )
        block = dense[:rows, :cols]
        if np.isnan(block).any():
            r, c = np.argwhere(np.isnan(block))[0]
            found = sheet.strings.get((int(r), int(c)))
            what = f"text {found!r}" if found is not None else "no number"
            raise WorkbookError(
                f"weight tab {name!r}: cell {cell_name(int(r), int(c))} holds {what}; weights must be numbers"
            )
        weights[name] = block.reshape(shape)
    emb = book.sheets[layout.EMBEDDINGS].strings
    emb_ids = [lookup.get(emb.get(rc, ""), -1) for rc in layout.emb_input_cells()]
    inputs = BookInputs(layout, texts, ids, int(predict_after), temperature, weights, emb_ids)
    if typed:
        inputs.typed_trace = typed["trace"]
    return inputs


def reference_trace(inputs: BookInputs) -> dict:
    config = inputs.layout.config
    used = [max(i, 0) for i in inputs.ids]
    model = Model(config, inputs.weights, Path("."))
    trace = gpt2(used, model.params, config)
    trace = with_selected_position(trace, inputs.predict_after, inputs.temperature)
    trace = with_teaching_stages(trace, inputs.weights, inputs.layout, inputs.predict_after, inputs.emb_ids)
    trace |= inputs.typed_trace
    trace["prompt.ids"] = np.asarray(inputs.ids, dtype=np.float64)[:, None]
    return trace


# ------------------------------------------------------------------ engines


@dataclass
class Values:
    """Recomputed values: numbers (NaN where not a number), and text/errors by cell."""

    numbers: dict[str, np.ndarray]
    text: dict[str, dict]
    errors: dict[str, dict]

    def number_grid(self, region: Region) -> np.ndarray:
        arr = self.numbers.get(region.tab)
        out = np.full((region.rows, region.width), np.nan)
        if arr is None:
            return out
        sub = arr[region.top : region.bottom + 1, region.left : region.right + 1]
        out[: sub.shape[0], : sub.shape[1]] = sub
        return out

    def describe(self, sheet: str, r: int, c: int):
        if (r, c) in self.errors.get(sheet, {}):
            return self.errors[sheet][(r, c)]
        if (r, c) in self.text.get(sheet, {}):
            return self.text[sheet][(r, c)]
        arr = self.numbers.get(sheet)
        if arr is not None and r < arr.shape[0] and c < arr.shape[1] and not np.isnan(arr[r, c]):
            return float(arr[r, c])
        return None


def run_engine(engine: str, path: Path, book: Book, progress=None, timeout: float = 1800) -> Values:
    if engine == "fast":
        from .evaluator import evaluate

        result = evaluate(book, progress=progress)
        return Values(result.values, result.text, result.errors)
    if engine == "formulas":
        return _run_formulas(path, book)
    if engine == "libreoffice":
        from .libreoffice import recalculate

        rc = recalculate(path, timeout=timeout)
        return Values(rc.numbers, rc.text, rc.errors)
    raise WorkbookError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _run_formulas(path: Path, book: Book) -> Values:
    n = sum(len(s.formulas) for s in book.sheets.values()) + sum(s.n_numbers for s in book.sheets.values())
    if n > FORMULAS_MAX_CELLS:
        raise WorkbookError(
            f"{path}: {n:,} cells is too many for --engine formulas (it would take many minutes "
            f"and gigabytes; limit {FORMULAS_MAX_CELLS:,}); use --engine fast or libreoffice"
        )
    import re

    import formulas
    from xlsxwriter.utility import xl_cell_to_rowcol

    model = formulas.ExcelModel().loads(str(path)).finish()
    solution = model.calculate()
    numbers = {name: np.full(s.dims, np.nan) for name, s in book.sheets.items()}
    text: dict = {name: {} for name in book.sheets}
    errors: dict = {name: {} for name in book.sheets}
    upper = {name.upper(): name for name in book.sheets}
    pattern = re.compile(r"^'\[[^\]]*\](.*)'!([A-Z]+\d+)(?::([A-Z]+\d+))?$")
    for key, value in solution.items():
        m = pattern.match(key)
        if not m or m.group(1) not in upper:
            continue
        sheet = upper[m.group(1)]
        r0, c0 = xl_cell_to_rowcol(m.group(2))
        arr = np.asarray(getattr(value, "value", value), dtype=object)
        arr = arr.reshape(arr.shape[-2:]) if arr.ndim >= 2 else arr.reshape(1, 1)
        for (i, j), x in np.ndenumerate(arr):
            r, c = r0 + i, c0 + j
            if r >= numbers[sheet].shape[0] or c >= numbers[sheet].shape[1]:
                continue
            if isinstance(x, (bool, np.bool_)):
                text[sheet][(r, c)] = str(bool(x)).upper()
            elif isinstance(x, (int, float, np.integer, np.floating)):
                numbers[sheet][r, c] = float(x)
            elif isinstance(x, str):
                text[sheet][(r, c)] = x
            elif x is not None and str(x) not in ("", "empty"):
                errors[sheet][(r, c)] = str(x)
    return Values(numbers, text, errors)


# ------------------------------------------------------------------ comparison


def compare_region(
    region: Region, values: Values, expected: np.ndarray, formulas_at: Callable, rtol: float
) -> StageResult:
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
    result = StageResult(
        region.name, region.tab, int(want.size), max_abs, float(np.max(rel)) if rel.size else 0.0, not failed.any()
    )
    if failed.any():
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
    trace = reference_trace(inputs)
    values = run_engine(engine, path, book, progress, timeout)
    at = _formula_lookup(book)
    report.formula_cells = sum(len(s.formulas) for s in book.sheets.values())
    for tab in inputs.layout.compute_tabs():
        for region in tab.regions:
            report.stages.append(compare_region(region, values, trace[region.name], at, rtol))
    report.seconds = time.perf_counter() - started
    return report


# ------------------------------------------------------------------ typed-prompt books


def _guide_typed(book: Book):
    """The BPE tab's limits from the Guide's configuration table, or None for a token-row book."""
    from .bpe_sheet import GUIDE_LABELS, TypedLimits

    guide = book.sheets[Layout.GUIDE]
    labels = {text: r for (r, c), text in guide.strings.items() if c == 0}
    if GUIDE_LABELS[0] not in labels:
        return None
    values = [_number(book, Layout.GUIDE, labels[k], 1, k) if k in labels else None for k in GUIDE_LABELS]
    if None in values or any(v != int(v) or v < 1 for v in values):
        raise WorkbookError(
            f"Guide tab: the typed-prompt limits ({', '.join(GUIDE_LABELS)}) must be whole numbers above 0"
        )
    limits = TypedLimits(*(int(v) for v in values))
    if limits.max_word_bytes < 2:
        raise WorkbookError("Guide tab: typed prompt: max bytes per word must be at least 2")
    return limits


def _typed_inputs(book: Book, layout: Layout, lookup: dict) -> dict:
    """Token ids of a typed-prompt book: our tokenizer on Prompt!B4's text (vocab and merges tabs), padded.

    A token row whose text (column B) is a constant typed over the BPE's formula uses that text's id,
    as the sheet does. The predicting position is the last token's unless Prompt!C3 holds a number.
    """
    from .bpe_sheet import MERGES, problem, reference
    from .tokenizer import Tokenizer

    T, V, M = layout.T, layout.config.vocab_size, layout.typed.n_merges
    prompt = book.sheets[layout.PROMPT]
    r, c = layout.TYPED_TEXT
    text = prompt.strings.get((r, c))
    if text is None:
        hit = np.nonzero((prompt.numbers[0] == r) & (prompt.numbers[1] == c))[0]
        text = "" if not len(hit) else _number_text(float(prompt.numbers[2][hit[0]]))
    vocab = book.sheets[layout.VOCAB].strings
    encoder = {vocab.get((i, 2)): i for i in range(V)}
    merges_tab = book.sheets[MERGES].strings
    merges = [(merges_tab.get((k, 1)), merges_tab.get((k, 2))) for k in range(1, M + 1)]
    if None in encoder or any(None in m for m in merges):
        raise WorkbookError(
            "the vocab tab (column C) or the merges tab (columns B, C) has an empty cell; "
            "the typed prompt cannot be checked"
        )
    tokenizer = Tokenizer(encoder, merges)
    why = problem(text, tokenizer, layout.typed, T)
    if why:
        raise WorkbookError(
            f"Prompt!{cell_name(r, c)}: the BPE tab cannot tokenize this text ({why}); it shows a "
            "message instead of tokens: type a shorter text or rebuild with sheetgpt build --prompt"
        )
    trace = reference(text, tokenizer, layout.typed, T)
    ids = [int(x) for x in trace["bpe.ids"][:, 0]]
    texts = []
    for t in range(T):
        typed_over = prompt.strings.get((PROMPT_TOP + t, layout.PROMPT_TEXT_COL))
        if typed_over is not None:
            ids[t] = lookup.get(typed_over, -1)
        texts.append(typed_over if typed_over is not None else vocab.get((ids[t], 1), ""))
    n = int(trace["bpe.count"][0, 0])
    pr, pc = layout.PREDICT_AFTER
    held = np.nonzero((prompt.numbers[0] == pr) & (prompt.numbers[1] == pc))[0]
    predict_after = float(prompt.numbers[2][held[0]]) if len(held) else n - 1
    if predict_after != int(predict_after) or not 0 <= predict_after < T:
        raise WorkbookError(
            f"Prompt!C3 (predict after position) must be a whole number from 0 to {T - 1}, got {predict_after!r}"
        )
    return {"texts": texts, "ids": ids, "predict_after": int(predict_after), "trace": trace}


def _number_text(x: float) -> str:
    """A number typed into the text cell, as the sheet's ""&B4 shows it."""
    return str(int(x)) if x == int(x) else repr(x)
