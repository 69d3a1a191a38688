"""The Guide tab: what the book is, the predicted token, a recalculation sentinel, the model's configuration
(which ``sheetgpt check`` reads back to lay the book out again), the prompt, every tab, the provenance."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from typing import TYPE_CHECKING

import numpy as np

from ... import __version__, a1, exercises
from ...config import GPT2Config
from ...errors import WorkbookError
from ...prompt import TypedLimits
from ...sae import MAX_D_SAE
from .. import readback
from ..layout import COMPUTE, GUIDE, INPUT, OUTPUT, WEIGHTS, BookOptions, Layout, Region, Switch, Tab
from . import predict
from . import prompt as prompt_tab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter

NAME = "Guide"
PREDICTED_ROW = 6  # B7: the predicted next token; B8: the recalculation sentinel (shows 2 once recalculated)
SENTINEL_ROW = PREDICTED_ROW + 1
CONFIG_TITLE_ROW = PREDICTED_ROW + 3  # "Model configuration", then one row per entry: label in A, number in B
# The configuration rows (label in column A, the number in column B), in order.
CONFIG = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "layer_norm_epsilon", "token rows")
LOGITS_ALL = "logits for every position"
GENERATE = "generated rows (greedy)"  # generating books only: --generate N
STEER = "steering and neuron tabs"  # books with the Steering and Neurons tabs (--generate or --steer): 1
# ... then one row per switched tab the book has (its Switch.label: 1), as the registry orders them, then:
SAE_BLOCK = "features tab: SAE reads block"  # books with the Features tab (--features, --sae): the SAE's block
SAE_FEATURES = "features tab: SAE features"  # ... and the number of features the book holds
# Typed-prompt books: the BPE tab's limits, in TypedLimits' field order.
TYPED_LIMITS = (
    "typed prompt: max characters",
    "typed prompt: max words",
    "typed prompt: max bytes per word",
    "typed prompt: merges",
)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    return [Tab(NAME, GUIDE)]


def prompt_row(layout: Layout) -> int:
    """The row of the prompt's text (below the configuration table); a generating book's continuation is
    the row after it."""
    entries = len(CONFIG) + 1 + bool(layout.generate) + layout.steer + 2 * bool(layout.sae)
    entries += sum(layout.has(s.name) for s in layout.switches)
    entries += len(TYPED_LIMITS) if layout.typed else 0
    return CONFIG_TITLE_ROW + entries + 2


def source_date() -> _dt.datetime | None:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) as a UTC time, or None when it is not set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
    return None


def built_at() -> str:
    """The build time shown in the Guide; SOURCE_DATE_EPOCH fixes it (as it does docProps/core.xml's)."""
    fixed = source_date()
    if fixed is not None:
        return fixed.replace(tzinfo=None).isoformat(timespec="seconds")
    return _dt.datetime.now().isoformat(timespec="seconds")


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, prompt = out.sheet(tab), out.fmt, out.layout, out.prompt
    c = layout.config
    ws.set_column(0, 0, 46)  # the section titles in full ("Neurons: which MLP neurons fire for each token")
    ws.set_column(1, 1, 60)
    ws.write_string(0, 0, "sheetgpt: GPT-2 as a spreadsheet", fmt.big)
    lines = [
        "Every number on the green tabs is computed by an ordinary formula from the grey weight tabs.",
        "Click any cell to see its formula. Each block tab shows GPT-2's steps in order, top to bottom.",
        "To try another prompt: edit a token text on the Prompt tab (yellow cells), then recalculate",
        "(LibreOffice: Data > Calculate > Recalculate Hard, Ctrl+Shift+F9; Excel: Ctrl+Alt+F9).",
    ]
    if layout.typed:
        lines[2] = "To try another prompt: type any text into the yellow cell B4 of the Prompt tab, then recalculate"
    for k, line in enumerate(lines):
        ws.write_string(1 + k, 0, line, fmt.note)
    ws.write_string(PREDICTED_ROW, 0, "Predicted next token", fmt.title)
    probs = out.trace["predict.probs"][:, 0]
    top = out.tokenizer.display(int(np.argmax(probs)))  # LARGE then MATCH: the first of equal ones
    formula, top = exercises.guarded(out, predict.top_token_ref(layout), top)  # an exercise book: "fill ... first"
    ws.write_formula(PREDICTED_ROW, 1, "=" + formula, fmt.edit, top)
    ws.write_string(SENTINEL_ROW, 0, "Recalculated? (2 = yes, 0 = no)", fmt.label)
    # Sentinel: the one cached value that is deliberately not the formula's (0); any recalculation shows 2.
    ws.write_formula(SENTINEL_ROW, 1, "=1+1", fmt.text, 0)
    ws.write_string(
        SENTINEL_ROW,
        2,
        "2: this app recalculated the book. 0: it shows the values saved in the file, which sheetgpt "
        "computed and which a recalculation reproduces.",
        fmt.note,
    )
    row = CONFIG_TITLE_ROW
    ws.write_string(row, 0, "Model configuration", fmt.title)
    values = (c.n_layer, c.n_head, c.n_embd, c.n_positions, c.vocab_size, c.layer_norm_epsilon, layout.T)
    config_rows = [*zip(CONFIG, values), (LOGITS_ALL, 1 if layout.logits_all else 0)]
    if layout.generate:
        config_rows.append((GENERATE, layout.generate))
    if layout.steer:
        config_rows.append((STEER, 1))
    config_rows += [(s.label, 1) for s in layout.switches if layout.has(s.name)]
    if layout.sae:
        config_rows += [(SAE_BLOCK, layout.sae[0]), (SAE_FEATURES, layout.sae[1])]
    if layout.typed:  # the BPE tab's limits (check reads them back)
        config_rows += list(zip(TYPED_LIMITS, dataclasses.astuple(layout.typed)))
    for k, (key, value) in enumerate(config_rows, start=1):
        ws.write_string(row + k, 0, key, fmt.label)
        ws.write_number(row + k, 1, value)
    row += len(config_rows) + 2
    assert row == prompt_row(layout)
    ws.write_string(row, 0, "Prompt", fmt.title)
    if not layout.generate:  # the live prompt (a formula over the Prompt tab)
        ws.write_formula(row, 1, "=" + prompt_tab.live_text_formula(layout), fmt.text, prompt_tab.live_text(prompt))
        row += 2
    else:
        row = _write_continuation(out, ws, row)
    if out.exercises:  # an exercise book: each exercise, a link to its region
        row = exercises.write_guide(out, ws, row)
    # what to try on the tabs that say so (GUIDE_SECTION: their texts' section in regions.ini)
    keys = [m.GUIDE_SECTION for m in layout.present if hasattr(m, "GUIDE_SECTION")]
    for key in keys:
        section = layout.texts[key] if layout.texts.has_section(key) else {}
        ws.write_string(row, 0, section.get("title", key), fmt.title)
        ws.write_string(row, 1, section.get("explain", ""), fmt.note)
        row += 1
    row += 1 if keys else 0
    ws.write_string(row, 0, "Tabs", fmt.title)
    for k, t in enumerate(layout.tabs[1:], start=1):
        ws.write_url(row + k, 0, f"internal:{a1.sheet_prefix(t.name)}A1", fmt.link, t.name)
        what = {INPUT: "input", COMPUTE: "computation", OUTPUT: "output", WEIGHTS: "weights"}[t.kind]
        regions = ", ".join(r.text["title"] for r in t.regions[:6]) + (", ..." if len(t.regions) > 6 else "")
        ws.write_string(row + k, 1, f"{what}: {regions}" if regions else what, fmt.label)
    row += len(layout.tabs) + 1
    ws.write_string(row, 0, "Provenance", fmt.title)
    prov = [("sheetgpt", __version__), ("model", out.source), ("built", built_at())]
    for k, (key, value) in enumerate(prov, start=1):
        ws.write_string(row + k, 0, key, fmt.label)
        ws.write_string(row + k, 1, value)
    ws.activate()
    return 0


def _write_continuation(out: BookWriter, ws, row: int) -> int:
    """A generating book's prompt and continuation, as text, from the Prompt tab's running text."""
    fmt, layout = out.fmt, out.layout
    shown, rest = prompt_tab.continuation_text(out)
    ws.write_formula(row, 1, "=" + prompt_tab.prompt_text_formula(layout), fmt.text, shown)
    ws.write_string(row + 1, 0, "Continuation (greedy)", fmt.title)
    formula, rest = exercises.guarded(out, prompt_tab.continuation_formula(layout, a1.cell(row, 1)), rest)
    ws.write_formula(row + 1, 1, "=" + formula, fmt.edit, rest)
    ws.write_string(
        row + 2,
        1,
        "Each row after the prompt on the Prompt tab is the model's most probable next token after the "
        "rows before it; the text stops at the first <|endoftext|>.",
        fmt.note,
    )
    return row + 4


def read_config(book: Book, switches: list[Switch]) -> tuple[GPT2Config, BookOptions]:
    """The model's configuration and the book's options, from the configuration table (``switches``:
    the registry's, whose rows say which switched tabs the book has)."""
    guide = book.sheets.get(NAME)
    if guide is None:
        raise WorkbookError("the book has no Guide tab; it was not made by sheetgpt build")
    labels = {text: r for (r, c), text in guide.strings.items() if c == 0}

    def get(label):
        value = readback.held(guide, labels[label], 1) if label in labels else None
        if value is None:
            raise WorkbookError(f"Guide tab: missing the number beside {label!r}; the configuration table is damaged")
        return value

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
    generate, steer, *on = _read_counts(book, (GENERATE, STEER, *(s.label for s in switches)))
    typed = _typed_limits(book, labels)
    sae = _read_sae(book, labels, config)
    has = frozenset(s.name for s, n in zip(switches, on) if n > 0)
    options = BookOptions(int(ints["token rows"]), bool(get(LOGITS_ALL)), typed, generate, steer > 0, sae, has)
    return config, options


def _read_sae(book: Book, labels: dict[str, int], config: GPT2Config) -> tuple[int, int] | None:
    """(the SAE's block, its features in the book) from the configuration table, or None for a book without."""
    if SAE_BLOCK not in labels and SAE_FEATURES not in labels:
        return None
    block, count = (
        readback.number(book, NAME, labels[k], 1, k) if k in labels else None for k in (SAE_BLOCK, SAE_FEATURES)
    )
    if block is None or count is None:
        raise WorkbookError(f"Guide tab: a book with the Features tab gives both {SAE_BLOCK!r} and {SAE_FEATURES!r}")
    if block != int(block) or not 0 <= block < config.n_layer:
        raise WorkbookError(f"Guide tab: {SAE_BLOCK} must be a block number from 0 to {config.n_layer - 1}")
    if count != int(count) or not 1 <= count <= MAX_D_SAE:
        raise WorkbookError(f"Guide tab: {SAE_FEATURES} must be a whole number from 1 to {MAX_D_SAE:,}, got {count!r}")
    return int(block), int(count)


def _read_counts(book: Book, labels: tuple[str, ...]) -> list[int]:
    """The configuration table's whole number beside each label (0 where the book has no such row): the
    generated rows, and 1 for each tab the book has (Steering, each switched tab)."""
    guide = book.sheets[NAME]
    rows = {text: r for (r, c), text in guide.strings.items() if c == 0}
    out = []
    for label in labels:
        value = readback.number(book, NAME, rows[label], 1, label) if label in rows else 0
        if value != int(value) or value < 0:
            raise WorkbookError(f"Guide tab: {label} must be a whole number, got {value!r}")
        out.append(int(value))
    return out


def _typed_limits(book: Book, labels: dict[str, int]) -> TypedLimits | None:
    """The BPE tab's limits from the configuration table, or None for a token-row book."""
    if TYPED_LIMITS[0] not in labels:
        return None
    values = [readback.number(book, NAME, labels[k], 1, k) if k in labels else None for k in TYPED_LIMITS]
    if None in values or any(v != int(v) or v < 1 for v in values):
        raise WorkbookError(
            f"Guide tab: the typed-prompt limits ({', '.join(TYPED_LIMITS)}) must be whole numbers above 0"
        )
    limits = TypedLimits(*(int(v) for v in values))
    if limits.max_word_bytes < 2:
        raise WorkbookError("Guide tab: typed prompt: max bytes per word must be at least 2")
    return limits
