"""The training book (``sheetgpt build --train``): one step of gradient descent, in formulas.

The Train tab holds a target token (text, default: the predicted token) and a learning rate
(default 0.005), both editable, a status message, the loss ``LN(S) - (logit - M)`` of the target at the
predicting row (temperature 1) and the backward pass of that loss from d logits down to d embed.h
(regions named like the Saliency tab's, with ``nll.`` in front). The train_weights module writes the
gradient of every parameter (tab ``d wte``, ...) and the updated parameters ``W - lr * dW`` (``new wte``,
...), each laid out like its weight tab; this module also writes a second forward pass over the updated
parameters (``Embed after``, ``Block 0 after``, ..., ``Logits after``: the forward tabs' formulas with
every weight tab replaced by its ``new`` tab), and on the Train tab the target's probability before and
after the step and the new top 5 (train_weights places those tabs, after the weight tabs, so that the
book and check's report go in the order they compute). No macros, no iteration: every formula reads only
what comes before.

A target not in the vocabulary or a learning rate that is text or negative: the status cell names it and
the step is off (learning rate 0: the updated parameters are the parameters), nothing else changes.
sheetgpt/backward.py is the reference (``NLL``, ``backward``); docs/backward.md derives each formula.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ... import a1, exact
from ...backward import NLL, backward
from ...checkpoint import Model, nest, param_shapes
from ...reference import gpt2
from .. import cells, readback
from ..layout import COMPUTE, FRAME_ROWS, Layout, Region, Switch, Tab, stack, weight_tab_shape
from ..prompt_cells import ID_COL as PROMPT_ID_COL
from ..prompt_cells import NAME as PROMPT
from ..prompt_cells import TOP as PROMPT_TOP
from ..trace import forward_stages
from . import block, embed, final_norm, logits, saliency, vocab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Train"
TOO_BIG = "lower --context, or leave out --train"  # book.limits' advice
DEFAULT_LR = 0.005
AFTER = " after"  # the second forward pass's tabs: "Embed after", "Block 0 after", ...
GRAD, NEW = "d ", "new "  # a parameter's gradient tab ("d wte") and updated tab ("new wte")
LABEL_COL, VALUE_COL, ID_COL = 0, 1, 2
TARGET_ROW, LR_ROW, STATUS_ROW = 3, 4, 5  # rows 4-6: target text (B4, its id in C4), learning rate (B5), status
OK_ROW, K_ROW, LR_USED_ROW, SUM_ROW, LOSS_ROW, P_BEFORE_ROW, MAX_AFTER_ROW, SUM_AFTER_ROW, P_AFTER_ROW = range(6, 15)
TOP_K = 5
TOP_ROW = P_AFTER_ROW + 3  # the new top 5: rank, token, id, logit, probability
NORMS_ROW = TOP_ROW + TOP_K + 2  # the gradient norms, one row per parameter


# Exercise families (sheetgpt.exercises): the loss's gradient at the logits; sheetgpt.grade has its math and the
# classic mistake (dp/p). Only this region of the tab can be an exercise (the others are cells without a frame).
EXERCISES = {"crossentropy_backward": ("nll.dlogits",)}
EXERCISABLE = ("nll.dlogits",)


def grad_tab(param: str) -> str:
    return GRAD + param


def new_tab(param: str) -> str:
    return NEW + param


def tab_range(config, tab: str, param: str) -> str:
    """A parameter-shaped tab as an absolute range: 'd h.0.attn.c_attn.w'!$A$1:$EN$48."""
    rows, cols = weight_tab_shape(param_shapes(config)[param])
    return a1.sheet_prefix(tab) + a1.span(0, 0, rows - 1, cols - 1)


SWITCH = Switch(
    "train",
    "training tabs",
    default=False,
    help="A training book: a Train tab (target token, learning rate, the loss and its backward pass), each "
    "parameter's gradient and updated value, and the forward pass after one step of gradient descent.",
    fixed_rows=True,
)


def wanted(layout: Layout) -> bool:
    """The book has the training tabs (--train; train_weights asks this too)."""
    return layout.has(SWITCH.name)


# ---- the editable cells --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainCells:
    """The two editable cells: the target token's text (as the vocab tab shows it) and the learning rate
    (a number, or what was typed: then the step is off)."""

    target: str
    lr: object = DEFAULT_LR

    def valid(self, lookup: dict[str, int]) -> tuple[int, bool]:
        """(the target's id, -1 if the vocabulary does not hold it; whether the step is on)."""
        tid = lookup.get(self.target, -1)
        number = isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
        return tid, bool(tid >= 0 and number and self.lr >= 0)


def status_text(s: TrainCells, lookup: dict[str, int]) -> str:
    """What ``status_formula`` shows for these cells."""
    tid, ok = s.valid(lookup)
    if tid < 0:
        return f"Step off: the target ({s.target}) is not in the vocabulary; copy a token text from the vocab tab"
    if not ok:
        return "Step off: the learning rate must be a number, 0 or more"
    return f"On: one step of gradient descent on the loss of {s.target!r}, learning rate {s.lr:g}"


def _cell(r: int, c: int) -> str:
    return a1.cell(r, c, True, True)


def status_formula() -> str:
    target, lr, tid = _cell(TARGET_ROW, VALUE_COL), _cell(LR_ROW, VALUE_COL), _cell(TARGET_ROW, ID_COL)
    return (
        f'IF({tid}<0,"Step off: the target ("&{target}&") is not in the vocabulary; copy a token text from the '
        'vocab tab",'
        f'IF({_cell(OK_ROW, VALUE_COL)}=0,"Step off: the learning rate must be a number, 0 or more",'
        f'"On: one step of gradient descent on the loss of \'"&{target}&"\', learning rate "&{lr}))'
    )


# ---- the tabs ------------------------------------------------------------------------------------

_PREFIX = re.compile(r"('(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!")


def _renamer(config) -> Callable[[str], str]:
    """Formula text of the forward tabs -> the same over the updated parameters and the 'after' tabs."""
    names = {embed.NAME, final_norm.NAME, logits.NAME, *(block.name(i) for i in range(config.n_layer))}
    mapping = {a1.sheet_prefix(n): a1.sheet_prefix(n + AFTER) for n in names}
    mapping |= {a1.sheet_prefix(p): a1.sheet_prefix(new_tab(p)) for p in param_shapes(config)}

    def rename(text: str) -> str:
        return _PREFIX.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    return rename


def after_tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    """The forward tabs again, each region renamed ``new.`` + stage, every formula over the updated
    parameters and the other 'after' tabs (the same cells: the layout is the forward's)."""
    rename = _renamer(layout.config)
    fresh: dict[str, Region] = dict(placed)
    forward: list[Tab] = []
    for module in (embed, block, final_norm, logits):
        for tab in module.tabs(layout, fresh):
            forward.append(tab)
            fresh |= {r.name: r for r in tab.regions}
    out = []
    for tab in forward:
        regions = []
        for r in tab.regions:
            f, arrays = r.formula, r.array_fn
            regions.append(
                dataclasses.replace(
                    r,
                    name="new." + r.name,
                    tab=tab.name + AFTER,
                    formula=(lambda i, j, f=f: rename(f(i, j))) if f else None,
                    array_fn=(lambda a=arrays: [(*box[:4], rename(box[4])) for box in a()]) if arrays else None,
                )
            )
        out.append(Tab(tab.name + AFTER, tab.kind, regions))
    return out


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not wanted(layout):
        return []
    c = layout.config
    T, V = layout.T, c.vocab_size
    after = after_tabs(layout, placed)  # placed by train_weights, at the end of the book: the same cells
    new_logits = next(r for t in after for r in t.regions if r.name == "new.logits")
    lg, top = placed["logits"], placed["predict.max"]
    M = top.at(0, 0, NAME, True, True)

    def one(name: str, row: int, fmt: str = "0.000000", col: int = VALUE_COL) -> Region:
        return Region(name, NAME, row, 1, 1, left=col, number_format=fmt)

    tid = one("nll.target_id", TARGET_ROW, "0", ID_COL)
    ok, k, lr = one("nll.ok", OK_ROW, "0"), one("nll.k", K_ROW, "0"), one("nll.lr", LR_USED_ROW, "0.######")
    total, loss, p_before = one("nll.sum", SUM_ROW), one("nll.loss", LOSS_ROW), one("nll.p_before", P_BEFORE_ROW)
    max_after, total_after = one("nll.max_after", MAX_AFTER_ROW), one("nll.sum_after", SUM_AFTER_ROW)
    p_after = one("nll.p_after", P_AFTER_ROW)
    top_id = Region("nll.top_id", NAME, TOP_ROW, TOP_K, 1, left=2, number_format="0")
    top_logit = Region("nll.top_logit", NAME, TOP_ROW, TOP_K, 1, left=3)
    top_prob = Region("nll.top_prob", NAME, TOP_ROW, TOP_K, 1, left=4)
    params = list(param_shapes(c))
    norms = Region("nll.grad_norms", NAME, NORMS_ROW, len(params), 1, left=2)

    texts, target_cell, lr_cell = vocab.display_range(V), _cell(TARGET_ROW, VALUE_COL), _cell(LR_ROW, VALUE_COL)
    tid.array_fn = lambda: [
        (TARGET_ROW, ID_COL, TARGET_ROW, ID_COL, f"IFERROR(MATCH(TRUE,EXACT({texts},{target_cell}),0)-1,-1)")
    ]
    tid_cell, ok_cell = _cell(TARGET_ROW, ID_COL), _cell(OK_ROW, VALUE_COL)
    # nested IFs: a text typed as the learning rate never reaches the comparison
    ok.formula = lambda i, j: f"IF(AND({tid_cell}>=0,ISNUMBER({lr_cell})),IF({lr_cell}>=0,1,0),0)"
    logits_block = lg.block(NAME)
    k.formula = lambda i, j: f"IF({ok_cell}=1,{tid_cell},MATCH({M},{logits_block},0)-1)"
    lr.formula = lambda i, j: f"IF({ok_cell}=1,{lr_cell},0)"
    k_cell, s_cell = _cell(K_ROW, VALUE_COL), _cell(SUM_ROW, VALUE_COL)
    total.array_fn = lambda: [(SUM_ROW, VALUE_COL, SUM_ROW, VALUE_COL, f"SUM(EXP({logits_block}-{M}))")]
    logit_k = f"INDEX({logits_block},{k_cell}+1)"
    loss.formula = lambda i, j: f"LN({s_cell})-({logit_k}-{M})"
    p_before.formula = lambda i, j: f"EXP({logit_k}-{M})/{s_cell}"
    new_block = new_logits.block(NAME)
    m2, s2 = _cell(MAX_AFTER_ROW, VALUE_COL), _cell(SUM_AFTER_ROW, VALUE_COL)
    max_after.formula = lambda i, j: f"MAX({new_block})"
    total_after.array_fn = lambda: [(SUM_AFTER_ROW, VALUE_COL, SUM_AFTER_ROW, VALUE_COL, f"SUM(EXP({new_block}-{m2}))")]
    p_after.formula = lambda i, j: f"EXP(INDEX({new_block},{k_cell}+1)-{m2})/{s2}"
    top_logit.formula = lambda i, j: f"LARGE({new_block},{i + 1})"
    top_id.formula = lambda i, j: f"MATCH({a1.cell(TOP_ROW + i, 3, col_abs=True)},{new_block},0)-1"
    top_prob.formula = lambda i, j: f"EXP({a1.cell(TOP_ROW + i, 3, col_abs=True)}-{m2})/{s2}"

    def norm(i: int) -> str:
        dw = tab_range(c, grad_tab(params[i]), params[i])
        return f"SQRT(SUMPRODUCT({dw},{dw}))"

    norms.formula = lambda i, j: norm(i)

    # the backward pass of the loss: d logits = P - onehot(k), then the Saliency tab's regions
    dlogits = Region("nll.dlogits", NAME, 0, V, 1, number_format="0.000000")
    dlogits.formula = lambda i, j: (
        f"EXP({lg.at(i, 0, NAME)}-{M})/{s_cell}-IF({a1.cell(dlogits.top + i, 0, col_abs=True)}={k_cell},1,0)"
    )
    regions = [dlogits, *saliency.backward_regions(layout, placed, dlogits, NAME, "nll.")]
    # which rows of wte the embedding read: onehot[v, t] = 1 where token t's id is v (wte's gradient scatters)
    onehot = Region("nll.onehot", NAME, 0, V, T, number_format="0", col_header=lambda j: j)
    ids = a1.sheet_prefix(PROMPT) + a1.span(PROMPT_TOP, PROMPT_ID_COL, PROMPT_TOP + T - 1, PROMPT_ID_COL)
    onehot.formula = lambda i, j: (
        f"IF(MAX(INDEX({ids},{a1.cell(onehot.header_row, onehot.left + j, row_abs=True)}+1),0)="
        f"{a1.cell(onehot.top + i, 0, col_abs=True)},1,0)"
    )
    regions.append(onehot)
    stack(regions, NORMS_ROW + len(params) + 2 + FRAME_ROWS)
    before, after_step = [tid, ok, k, lr, total, loss, p_before], [norms, max_after, total_after, p_after]
    # in the order they compute (check reports them so): the step, its backward, then what the step changed
    train_tab = Tab(NAME, COMPUTE, [*before, *regions, *after_step, top_logit, top_id, top_prob])
    return [train_tab]  # the tabs after it in the book: train_weights.tabs


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, trace = out.sheet(tab), out.fmt, out.layout, out.trace
    s: TrainCells = out.inputs["train"]
    texts = layout.texts["train"] if layout.texts.has_section("train") else {}
    ws.set_column(0, 0, 24)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 4, 11)
    ws.write_string(0, 0, texts.get("title", NAME), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    labels = {
        TARGET_ROW: "target token",
        LR_ROW: "learning rate",
        STATUS_ROW: "status",
        OK_ROW: "step on (1) or off (0)",
        K_ROW: "target id used",
        LR_USED_ROW: "learning rate used",
        SUM_ROW: "S = SUM(EXP(logit - M))",
        LOSS_ROW: "loss LN(S) - (logit - M)",
        P_BEFORE_ROW: "p(target) before",
        MAX_AFTER_ROW: "M after the step",
        SUM_AFTER_ROW: "S after the step",
        P_AFTER_ROW: "p(target) after",
    }
    for r, label in labels.items():
        ws.write_string(r, LABEL_COL, label, fmt.label)
    ws.write_string(TARGET_ROW - 1, ID_COL, "token id", fmt.header)
    ws.write_string(TARGET_ROW, VALUE_COL, s.target, fmt.edit_text)  # user text: a Text cell, never a formula
    if isinstance(s.lr, (int, float)):
        ws.write_number(LR_ROW, VALUE_COL, float(s.lr), fmt.edit)
    else:
        ws.write_string(LR_ROW, VALUE_COL, str(s.lr), fmt.edit)
    lookup = out.inputs["vocab"].lookup
    ws.write_formula(STATUS_ROW, VALUE_COL, "=" + status_formula(), fmt.note, status_text(s, lookup))
    regions = {r.name: r for r in tab.regions}
    first, last = (tab.regions.index(regions[n]) for n in ("nll.dlogits", "nll.onehot"))
    stacked = tab.regions[first : last + 1]  # the backward, with frames; the rest: cells at fixed places
    count = 1
    for r in tab.regions[:first] + tab.regions[last + 1 :]:
        count += write_cells(out, ws, r)
    ws.write_string(TOP_ROW - 2, LABEL_COL, "after the step: the new top 5", fmt.title)
    for col, label in enumerate(["rank", "token", "id", "logit", "probability"]):
        ws.write_string(TOP_ROW - 1, col, label, fmt.header)
    shown = vocab.display_range(layout.config.vocab_size)
    ids = trace["nll.top_id"][:, 0]
    for i in range(TOP_K):
        ws.write_number(TOP_ROW + i, 0, i + 1, fmt.label)
        text = out.tokenizer.display(int(ids[i]))
        ws.write_formula(TOP_ROW + i, 1, f"=INDEX({shown},{a1.cell(TOP_ROW + i, 2)}+1)", fmt.token, text)
    ws.write_string(NORMS_ROW - 2, LABEL_COL, "gradient norms: SQRT(SUMPRODUCT(dW, dW)) of each tab d W", fmt.title)
    ws.write_string(NORMS_ROW - 1, 1, "parameter", fmt.header)
    ws.write_string(NORMS_ROW - 1, 2, "norm", fmt.header)
    for i, p in enumerate(param_shapes(layout.config)):
        ws.write_url(NORMS_ROW + i, 1, f"internal:{a1.sheet_prefix(grad_tab(p))}A1", fmt.token, string=grad_tab(p))
    for name in ("nll.p_before", "nll.p_after"):
        r = regions[name]
        shown = float(trace[name][0, 0])
        ws.write_formula(r.top, r.left + 1, f"={a1.cell(r.top, r.left)}", fmt.number("0.0%"), shown)
    for r in stacked:
        count += cells.write_region(out, ws, r)
        cells.note(ws, r.title_row, 0, r.text["explain"])
    cells.define_names(out, tab)
    out.done(tab)
    return count


def write_cells(out: BookWriter, ws, region: Region) -> int:
    """A region without a frame: its formulas, with their cached values (an exercise book's cells that wait
    on a blank are given their message afterwards: ``book.fill_cached.cold``)."""
    return cells.write_formulas(ws, region, out.trace, out.fmt.number(region.number_format))


# ---- inputs and the reference --------------------------------------------------------------------


def given(build: Build, inputs: BookInputs) -> TrainCells:
    """A new book's cells: ``--train``'s settings, else the predicted token and 0.005."""
    if "train" in build.settings:
        return build.settings["train"]
    prompt = inputs["prompt"]
    params = Model(build.config, build.weights, Path(".")).params
    ids = [max(i, 0) for i in prompt.ids]
    logits_t = gpt2(ids, params, build.config)["logits"][prompt.predict_after]
    return TrainCells(inputs["vocab"].display[int(np.argmax(logits_t))], DEFAULT_LR)


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> TrainCells:
    sheet = book.sheets[NAME]
    number = readback.held(sheet, LR_ROW, VALUE_COL)
    lr = number if number is not None else sheet.strings.get((LR_ROW, VALUE_COL), "")
    return TrainCells(sheet.strings.get((TARGET_ROW, VALUE_COL), ""), lr)


def stages(inputs: BookInputs, trace: dict) -> dict:
    """The Train tab's, the gradient tabs', the updated tabs' and the second forward pass's stages."""
    layout = inputs.layout
    config = layout.config
    s: TrainCells = inputs["train"]
    weights = {k: np.asarray(v, np.float64) for k, v in inputs["weights"].items()}
    t = inputs["prompt"].predict_after
    all_logits = trace["logits.all"].T  # [T, V]
    tid, ok = s.valid(inputs["vocab"].lookup)
    k = tid if ok else int(np.argmax(all_logits[t]))
    lr = float(s.lr) if ok else 0.0
    g = backward(trace["ids"], weights, config, NLL(k), t, dict(trace, logits=all_logits))
    top = all_logits[t].max()
    e = exact.exp(all_logits[t] - top)
    out = {
        "nll.target_id": np.array([[tid]], np.float64),
        "nll.ok": np.array([[1.0 if ok else 0.0]]),
        "nll.k": np.array([[float(k)]]),
        "nll.lr": np.array([[lr]]),
        "nll.sum": np.array([[e.sum()]]),
        "nll.loss": np.array([[g.value]]),
        "nll.p_before": np.array([[e[k] / e.sum()]]),
        "nll.dlogits": g.acts["dlogits"][t][:, None],
        "nll.dln_f.last": g.acts["dln_f.out"][t][None, :],
    }
    out |= {"nll." + n: v for n, v in g.acts.items() if n.startswith(("dln_f.", "dh.", "dembed.h"))}
    used = np.asarray(trace["ids"])
    out["nll.onehot"] = (np.arange(config.vocab_size)[:, None] == used[None, :]).astype(np.float64)
    shapes = param_shapes(config)
    new = {}
    for p, shape in shapes.items():
        grad = g.params[p]
        out[f"grad.{p}"] = grad.reshape(weight_tab_shape(shape))
        new[p] = weights[p] - lr * grad
        out[f"new.{p}"] = new[p].reshape(weight_tab_shape(shape))
    out["nll.grad_norms"] = np.array([[np.sqrt(exact.total(g.params[p] ** 2))] for p in shapes])
    second = forward_stages(used, nest(new, config.n_layer), config, t, inputs["predict"])
    out |= {"new." + n: v for n, v in second.items() if isinstance(v, np.ndarray)}
    after = second["logits.all"][:, t]
    m2 = after.max()
    e2 = exact.exp(after - m2)
    values = np.sort(after)[::-1][:TOP_K]
    out |= {
        "nll.max_after": np.array([[m2]]),
        "nll.sum_after": np.array([[e2.sum()]]),
        "nll.p_after": np.array([[e2[k] / e2.sum()]]),
        "nll.top_logit": values[:, None],
        "nll.top_id": np.array([[float(np.argmax(after == v))] for v in values]),
        "nll.top_prob": (exact.exp(values - m2) / e2.sum())[:, None],
    }
    return out
