"""Write the workbook: every tab of the layout, each by its own module, as formulas over weight tabs.

The formulas come from the tab modules' regions; the writer only hands each tab module the
book being written and puts the pieces together: xlsxwriter writes the frames of every tab
to a skeleton book, then ``xlsx.assemble`` copies its members into the output, streams the
weight tabs' worksheets in their place and merges the compute tabs' per-cell formulas (as
shared formulas) into theirs. Cached values come from the reference, so that a viewer that
does not recalculate still shows the right numbers.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import xlsxwriter
from xlsxwriter.exceptions import FileCreateError

from ..checkpoint import Model
from ..errors import SheetGPTError
from ..exercises import resolve as resolve_exercises
from ..prompt import Prompt, make_prompt
from ..safe_io import path_text, publish, write_error
from ..tokenizer import Tokenizer
from ..weight_text import stored_values
from . import fill_cached, limits
from . import tabs as registry
from .formats import Formats
from .layout import COMPUTE, GUIDE, INPUT, OUTPUT, WEIGHTS, BookOptions, Layout
from .output import BookWriter
from .tabs import guide
from .trace import BookInputs, Build, book_trace, given_inputs
from .xlsx.assemble import assemble
from .xlsx.worksheet import FormulaSheet

if TYPE_CHECKING:
    from ..sae import SAE
    from ..sampling import Settings as SampleSettings
    from .tabs.steering import Settings

TAB_COLORS = {GUIDE: "#7F7F7F", INPUT: "#2E75B6", COMPUTE: "#70AD47", OUTPUT: "#C55A11", WEIGHTS: "#BFBFBF"}

# Cells of a shared formula checked against region.formula(i, j) at build time: "sample" (each
# rectangle's edges, diagonal and a seeded sample; every cell of small ones) or "all".
SHARED_VERIFY = "sample"


@dataclass
class BuildResult:
    path: Path
    layout: Layout
    trace: dict
    ids: list[int]
    seconds: float
    cells: int
    exercises: list[str] = field(default_factory=list)
    inputs: BookInputs | None = None  # what the trace was computed from (book.trace)


def build_workbook(
    model: Model,
    tokenizer: Tokenizer,
    prompt_text: str,
    out_path: str | Path,
    *,
    context: int | None = None,
    logits_all: bool = False,
    force: bool = False,
    source: str = "",
    progress: Callable[[int, str], None] | None = None,
    typed_prompt: bool | None = False,
    exercise: str | None = None,
    generate: int = 0,
    steer: Settings | None = None,
    sample_settings: SampleSettings | None = None,
    sae: SAE | None = None,
    feature: float | None = None,
    sae_features: int | None = None,
    tabs: Mapping[str, object] | None = None,
) -> BuildResult:
    """Write the whole book to out_path (via a temporary file renamed at the end).

    ``generate`` N > 0: the book's rows are the prompt and N more, each the next token of the rows
    before it, computed by the book's formulas (``context`` is then the prompt's length + N).
    ``steer``: the Steering tab's cells (activation steering); books with ``generate`` or ``steer`` have
    that tab, with strength 0 unless ``steer`` says otherwise. ``tabs``: the switched tabs (a tab module's
    ``SWITCH``) by name, on (True or the tab's settings: ``{"train": TrainCells(" swiftly")}``) or off
    (False); a switch not named takes its default (the Saliency tab on, the training tabs off).
    ``sample_settings``: the Sample tab's cells (generating books; default greedy): the generated rows
    are those choices (``sheetgpt.sampling``). ``sae``: the Features tab and the SAE's weight tabs
    (``sae_features`` N: only the N features most active on the prompt); ``feature``: the feature its
    heat map shows (default: the most active one at the predicting position).
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".xlsx":
        raise SheetGPTError(f"{out_path}: the output must be an .xlsx file")
    if out_path.exists() and not force:
        raise SheetGPTError(f"{out_path} exists; pass --force to overwrite it")
    if out_path.is_dir():
        raise SheetGPTError(f"{out_path} is a directory; give a file name ending in .xlsx")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise SheetGPTError(
            f"{model.path}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says vocab_size "
            f"{model.config.vocab_size}"
        )
    if generate:
        context = _generated_context(prompt_text, tokenizer, model.config.n_positions, generate)
    prompt = make_prompt(prompt_text, tokenizer, model.config.n_positions, context=context, typed=typed_prompt)
    steered = generate > 0 or steer is not None  # the Steering and Neurons tabs
    settings = {"steering": steer, "sample": sample_settings}  # the command line's values for a tab's cells
    settings = {tab: value for tab, value in settings.items() if value is not None}
    switches = {s.name: s.default for s in registry.switches()}
    unknown = sorted(set(tabs or {}) - set(switches))
    if unknown:
        raise ValueError(f"build_workbook: no tab is switched by {unknown} (switches: {sorted(switches)})")
    for name, value in (tabs or {}).items():
        switches[name] = value is not False
        if not isinstance(value, bool):
            settings[name] = value  # the tab's cells, as its given() reads them
    if sae is not None:
        sae, settings["features"] = _book_sae(model, prompt, sae, feature, sae_features, steer)
        settings["sae"] = sae
    options = BookOptions(
        len(prompt.ids),
        logits_all or generate > 0,
        prompt.typed,
        generate,
        steered,
        sae=(sae.block, sae.d_sae) if sae is not None else None,
        switches=frozenset(name for name, on in switches.items() if on),
    )
    layout = registry.layout(model.config, options)  # registry.TABS at call time (a test may add a tab)
    limits.check(layout, prompt)  # before anything is computed or written
    exercises = resolve_exercises(layout, exercise) if exercise is not None else []
    stored = {name: stored_values(value) for name, value in model.flat.items()}
    inputs = given_inputs(layout, Build(model.config, tokenizer, prompt, stored, settings))
    trace = book_trace(inputs)
    if generate:  # the rows after the prompt: the reference's continuation (greedy unless the Sample tab samples)
        prompt = prompt.continued([int(i) for i in trace["ids"]], tokenizer)

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SheetGPTError(f"{out_path}: cannot create its directory ({exc.strerror or exc})") from None
    _remove_stale_parts(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        cells = _write(
            tmp,
            layout,
            prompt,
            tokenizer,
            inputs,
            trace,
            source or path_text(model.path),
            progress,
            exercises,
        )
        publish(tmp, out_path, force, "book")  # never replaces a file that appeared meanwhile, unless force
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, FileCreateError)):  # full disk, read-only place, name too long
            raise write_error(out_path, exc) from None
        raise
    return BuildResult(out_path, layout, trace, prompt.ids, time.perf_counter() - started, cells, exercises, inputs)


def _book_sae(model: Model, prompt: Prompt, sae: SAE, feature, n: int | None, steer) -> tuple[SAE, float]:
    """The SAE as the book holds it (``n``: only the n features most active on the prompt, with the heat
    map's and the steering's features among them) and the heat map's feature (default: the most active
    at the predicting position of the prompt's forward pass)."""
    from ..reference import gpt2
    from ..sae import resid_pre, select_features

    x = resid_pre(gpt2([max(i, 0) for i in prompt.ids], model.params, model.config), sae.block)
    if feature is None:
        feature = int(sae.encode(x[prompt.predict_after : prompt.predict_after + 1])[0].argmax())
    keep = [int(feature)] + (
        [int(steer.feature)] if steer is not None and int(getattr(steer, "feature", -1)) >= 0 else []
    )
    if n is None or n >= sae.d_sae:
        return sae.subset(range(sae.d_sae)), float(feature)
    return sae.subset(select_features(sae, x, n, keep)), float(feature)


def _generated_context(text: str, tokenizer: Tokenizer, n_positions: int, generate: int) -> int:
    """Token rows of a book that generates ``generate`` tokens after the prompt."""
    n = len(make_prompt(text, tokenizer, n_positions).ids)
    if n + generate > n_positions:
        raise SheetGPTError(
            f"--generate {generate}: the prompt's {n} tokens and {generate} generated rows are more than the "
            f"model's n_positions ({n_positions}); use --generate {n_positions - n} or less "
            "(--context and --generate both set the token rows)"
        )
    return n + generate


def _remove_stale_parts(out_path: Path) -> None:
    """Delete the temporary files (.NAME.PID.part, .NAME.PID.part.skeleton) a killed build left
    beside out_path; those of a PID still running belong to another build and stay."""
    for p in out_path.parent.glob(f".{glob.escape(out_path.name)}.*.part*"):
        pid = p.name[len(out_path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or not p.name.endswith((".part", ".part.skeleton")):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass


def _write(
    path,
    layout: Layout,
    prompt: Prompt,
    tokenizer: Tokenizer,
    inputs: BookInputs,
    trace,
    source,
    progress,
    exercises=(),
) -> int:
    """xlsxwriter writes the frames of every tab to a skeleton book; ``assemble`` then copies its
    members into ``path``, streams the weight tabs' worksheets in their place and merges the
    compute tabs' per-cell formulas (as shared formulas) into theirs."""
    path = Path(path)
    skeleton = path.with_name(path.name + ".skeleton")
    try:
        cells, weights, formulas = _write_skeleton(
            skeleton, layout, prompt, tokenizer, inputs, trace, source, progress, exercises
        )
        cells += assemble(
            str(skeleton),
            str(path),
            weights,
            progress=(lambda tab: progress(1, tab)) if progress else None,
            formulas=formulas,
            verify=SHARED_VERIFY,
        )
    finally:
        skeleton.unlink(missing_ok=True)
    return cells


def _write_skeleton(
    path,
    layout: Layout,
    prompt: Prompt,
    tokenizer: Tokenizer,
    inputs: BookInputs,
    trace,
    source,
    progress,
    exercises=(),
):
    """The book with empty weight tabs and without the compute tabs' per-cell formulas; returns
    (cells written, {worksheet member: (tab, values)}, {worksheet member: (tab, formula blocks)})."""
    wb = xlsxwriter.Workbook(
        str(path),
        {
            "use_future_functions": False,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "constant_memory": False,
        },
    )
    created = guide.source_date()
    if created is not None:  # docProps/core.xml's creation time (xlsxwriter writes the current time otherwise)
        wb.set_properties({"created": created})
    out = BookWriter(wb, Formats(wb), layout, prompt, tokenizer, trace, inputs, source, progress)
    out.exercises = tuple(exercises)
    for tab in layout.tabs:
        ws = wb.add_worksheet(tab.name, worksheet_class=FormulaSheet)
        ws.set_tab_color(TAB_COLORS[tab.kind])
        out.sheets[tab.name] = ws
    cells = 0
    for tab in layout.tabs:  # in TABS order (xlsxwriter numbers strings and formats as it meets them)
        cells += tab.module.write(out, tab)
    for tab in layout.tabs:  # cached values that need tabs written later (the BPE tab's)
        if hasattr(tab.module, "finish"):
            tab.module.finish(out, tab)
    if out.exercises:  # before the learner starts: "fill exercise X first" wherever a value waits on a blank
        fill_cached.cold(out, SHARED_VERIFY)
    # xlsxwriter names worksheet parts sheet1.xml, sheet2.xml, ... in order.
    member = {name: f"xl/worksheets/sheet{ws.index + 1}.xml" for name, ws in out.sheets.items()}
    weights = {member[name]: (name, values) for name, values in out.streamed.items()}
    formulas = {member[name]: (name, ws.shared) for name, ws in out.sheets.items() if ws.shared}
    wb.close()
    return cells, weights, formulas
