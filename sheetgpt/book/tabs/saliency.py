"""The Saliency tab: the backward pass in formulas, from the predicting row down to the token embeddings.

It explains the prediction as Ecco's ``grad_x_input`` does: the gradient of the predicted token's
probability (temperature 1) with respect to each token's embedding wte[id], times that embedding,
its L2 norm per token, divided by the sum over tokens. Activation gradients only (no weight
gradients), in the reverse order of the forward: d logits, the final norm, then each block from
the last to the first (MLP, then attention), then d embed.h and the scores. Region names are the
forward's stage names with a ``d`` in front (``dh.0.mlp.gelu``); sheetgpt/backward.py is the
reference (``saliency_stages``) and docs/backward.md derives each formula.

Portable formulas only: MMULT with TRANSPOSE in CSE arrays, SUMPRODUCT of plain ranges, AVERAGE,
TANH. In generating and steered books the backward reads the forward's values like any other book
(a steering vector is a constant added to the stream: the gradient passes it unchanged).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...backward import saliency_stages
from ...checkpoint import Model
from .. import cells
from ..layout import COMPUTE, FRAME_ROWS, Layout, Region, Switch, Tab, stack, weight_range
from . import prompt as prompt_tab
from . import vocab

if TYPE_CHECKING:
    from ..output import BookWriter
    from ..trace import BookInputs

NAME = "Saliency"
TOO_BIG = "lower --context, or pass --no-saliency"  # book.limits' advice: the backward grows with the token rows
SUMMARY_TOP = 6  # the summary's first token row: title, explanation, the prediction, its probability, blank, header
GELU_C = "SQRT(2/PI())"
# Exercise families (sheetgpt.exercises): d + the stage name without "h.N." (each block's); sheetgpt.grade
# has each one's math and the classic mistakes it diagnoses.
EXERCISES = {
    "softmax_backward": ("dattn.scores",),
    "layer_norm_backward": ("dres_2", "dres_1", "dembed.h"),
    "gelu_backward": ("dmlp.c_fc",),
    "attention_backward": ("dattn.weights", "dattn.scores", "dattn.c_attn"),
}


SWITCH = Switch(
    "saliency",
    "saliency tab",
    default=True,
    help="The Saliency tab: the backward pass of the predicted token's probability down to the token "
    "embeddings, in formulas, and Ecco's grad_x_input score per token (--no-saliency leaves it out).",
)


def wanted(layout: Layout) -> bool:
    """The book has this tab: every book ``sheetgpt build`` writes, unless ``--no-saliency``."""
    return layout.has(SWITCH.name)


def stages(inputs: BookInputs, trace: dict) -> dict:
    """The tab's reference stages (``backward.saliency_stages``) for the book's forward pass: the
    weights as the book holds them, the predicting row the Prompt tab gives, temperature 1."""
    config = inputs.layout.config
    params = Model(config, inputs["weights"], Path(".")).params
    forward = dict(trace, logits=trace["logits.all"].T)  # every row's logits [T, V], as reference.gpt2 gives them
    return saliency_stages(forward, params, config, inputs["prompt"].predict_after)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not wanted(layout):
        return []
    T, V = layout.T, layout.config.vocab_size
    logits, top = placed["logits"], placed["predict.max"]

    total = Region("sal.sum", NAME, 0, 1, 1, number_format="0.000000")
    pred = Region("sal.id", NAME, 0, 1, 1, number_format="0")
    dlogits = Region("dlogits", NAME, 0, V, 1, number_format="0.000000")
    top_cell = top.at(0, 0, NAME, True, True)
    # one-cell CSE formula: EXP over a range is element-wise in every engine only in an array formula
    total.array_fn = lambda: [
        (total.top, total.left, total.top, total.left, f"SUM(EXP({logits.block(NAME)}-{top_cell}))")
    ]
    pred.formula = lambda i, j: f"MATCH({top_cell},{logits.block(NAME)},0)-1"

    def dlogit(i: int) -> str:  # P_i (onehot_i - P_k), and P_k = 1/S: the predicted token's logit is the maximum
        s, k = total.at(0, 0, NAME, True, True), pred.at(0, 0, NAME, True, True)
        token_id = a1.cell(dlogits.top + i, 0, col_abs=True)
        return f"EXP({logits.at(i, 0, NAME)}-{top_cell})/{s}*(IF({token_id}={k},1,0)-1/{s})"

    dlogits.formula = lambda i, j: dlogit(i)
    regions = [total, pred, dlogits, *backward_regions(layout, placed, dlogits)]
    dembed = regions[-1]
    x = placed["embed.wte"]
    grad_norm = Region("sal.grad_norm", NAME, 0, T, 1, number_format="0.000000")
    gxi = Region("sal.grad_x_input", NAME, 0, T, 1, number_format="0.000000")
    score = Region("sal.score", NAME, 0, T, 1, number_format="0.000")
    grad_norm.formula = lambda i, j: f"SQRT(SUMPRODUCT({dembed.row(i, NAME)},{dembed.row(i, NAME)}))"
    gxi.formula = lambda i, j: (
        f"SQRT(SUMPRODUCT({dembed.row(i, NAME)},{dembed.row(i, NAME)},{x.row(i, NAME)},{x.row(i, NAME)}))"
    )
    score.formula = lambda i, j: f"{gxi.at(i, 0, NAME, col_abs=True)}/SUM({gxi.block(NAME)})"
    regions += [grad_norm, gxi, score]
    stack(regions, SUMMARY_TOP + T + 1 + FRAME_ROWS + 1)  # below the summary
    return [Tab(NAME, COMPUTE, regions)]


def backward_regions(
    layout: Layout, placed: dict[str, Region], dlogits: Region, tab: str = NAME, prefix: str = ""
) -> list[Region]:
    """From d logits (the predicting row's, [V, 1]) down to d embed.h: d ln_f.out's predicting row, put
    back in its row, the final norm's backward, then each block's from the last (``d{stage}`` names)."""
    c, T, L = layout.config, layout.T, layout.config.n_layer
    select = placed["ln_f.select"]
    dlast = Region(f"{prefix}dln_f.last", tab, 0, 1, c.n_embd)
    dout = Region(f"{prefix}dln_f.out", tab, 0, T, c.n_embd)
    wte = weight_range(c, "wte")
    dlast.array_fn = lambda: [
        (dlast.top, dlast.left, dlast.bottom, dlast.right, f"MMULT(TRANSPOSE({dlogits.block(tab)}),{wte})")
    ]
    # the predicting row's gradient put back in its row, 0 in the others: the one-hot column times the row
    dout.array_fn = lambda: [
        (dout.top, dout.left, dout.bottom, dout.right, f"MMULT(TRANSPOSE({select.block(tab)}),{dlast.block(tab)})")
    ]
    regions = [dlast, dout]
    x_name = f"{prefix}dh.{L - 1}.res_2" if L else f"{prefix}dembed.h"
    regions += layer_norm_backward(layout, placed, "ln_f", "ln_f", dout, x_name, None, tab, prefix)
    for i in reversed(range(L)):
        regions += block_backward(layout, placed, i, regions[-1], tab, prefix)
    return regions


def layer_norm_backward(
    layout: Layout,
    placed: dict[str, Region],
    name: str,
    params: str,
    dout: Region,
    dx_name: str,
    residual,
    tab: str = NAME,
    prefix: str = "",
) -> list[Region]:
    """dnorm = dout * g; dmean, dvar per row; dx = (dnorm - dmean - norm * dvar) / sqrt(var + eps) (+ residual).
    ``tab``: where the regions go; ``prefix``: before their names (the Train tab's backward: ``nll.``)."""
    d, eps, T = layout.config.n_embd, layout.config.layer_norm_epsilon, layout.T
    norm, var = placed[f"{name}.norm"], placed[f"{name}.var"]
    g = a1.sheet_prefix(f"{params}.g")
    dname = f"{prefix}d{name}"
    dnorm = Region(f"{dname}.dnorm", tab, 0, T, d)
    dmean = Region(f"{dname}.dmean", tab, 0, T, 1, number_format="0.000000")
    dvar = Region(f"{dname}.dvar", tab, 0, T, 1, number_format="0.000000")
    dx = Region(dx_name, tab, 0, T, d)
    dnorm.formula = lambda i, j: f"{dout.at(i, j, tab)}*{g}{a1.cell(0, j, True)}"
    dmean.formula = lambda i, j: f"AVERAGE({dnorm.row(i, tab)})"
    dvar.formula = lambda i, j: f"SUMPRODUCT({dnorm.row(i, tab)},{norm.row(i, tab)})/{d}"
    skip = (lambda i, j: f"+{residual.at(i, j, tab)}") if residual is not None else (lambda i, j: "")
    dx.formula = lambda i, j: (
        f"({dnorm.at(i, j, tab)}-{dmean.at(i, 0, tab, col_abs=True)}-{norm.at(i, j, tab)}"
        f"*{dvar.at(i, 0, tab, col_abs=True)})/SQRT({var.at(i, 0, tab, col_abs=True)}+{eps:G}){skip(i, j)}"
    )
    return [dnorm, dmean, dvar, dx]


def block_backward(
    layout: Layout, placed: dict[str, Region], i: int, dres_2: Region, tab: str = NAME, prefix: str = ""
) -> list[Region]:
    """Block i from its output's gradient to its input's: MLP, ln_2, attention, ln_1 (each residual add
    passes the gradient on unchanged, so the branch's dx is added to it)."""
    c, T = layout.config, layout.T
    d, H, hd = c.n_embd, c.n_head, c.head_dim
    p = f"h.{i}"
    fc, qkv, weights = placed[f"{p}.mlp.c_fc"], placed[f"{p}.attn.c_attn"], placed[f"{p}.attn.weights"]

    def times_transpose(region: Region, a: Region, w: str) -> Region:  # {=MMULT(a, TRANSPOSE(w))}
        region.array_fn = lambda: [
            (region.top, region.left, region.bottom, region.right, f"MMULT({a.block(tab)},TRANSPOSE({w}))")
        ]
        return region

    dgelu = times_transpose(
        Region(f"{prefix}d{p}.mlp.gelu", tab, 0, T, 4 * d), dres_2, weight_range(c, f"{p}.mlp.c_proj.w")
    )
    dfc = Region(f"{prefix}d{p}.mlp.c_fc", tab, 0, T, 4 * d)

    def gelu_prime(i: int, j: int) -> str:  # 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2)
        x = fc.at(i, j, tab)
        th = f"TANH({GELU_C}*({x}+0.044715*{x}^3))"
        return f"(0.5*(1+{th})+0.5*{x}*(1-{th}^2)*{GELU_C}*(1+3*0.044715*{x}^2))"

    dfc.formula = lambda i, j: f"{dgelu.at(i, j, tab)}*{gelu_prime(i, j)}"
    dln_2 = times_transpose(Region(f"{prefix}d{p}.ln_2.out", tab, 0, T, d), dfc, weight_range(c, f"{p}.mlp.c_fc.w"))
    ln_2 = layer_norm_backward(
        layout, placed, f"{p}.ln_2", f"{p}.ln_2", dln_2, f"{prefix}d{p}.res_1", dres_2, tab, prefix
    )
    dres_1 = ln_2[-1]
    dmerged = times_transpose(
        Region(f"{prefix}d{p}.attn.merged", tab, 0, T, d, col_header=lambda j: f"h{j // hd}.{j % hd}"),
        dres_1,
        weight_range(c, f"{p}.attn.c_proj.w"),
    )
    heads = dict(heads=H, block_cols=T, header_rows=3)  # head number, key token, key position
    dweights = Region(f"{prefix}d{p}.attn.weights", tab, 0, T, T, **heads)
    dscores = Region(f"{prefix}d{p}.attn.scores", tab, 0, T, T, **heads)
    dqkv = Region(f"{prefix}d{p}.attn.c_attn", tab, 0, T, 3 * d)
    dqkv.col_header = lambda j: f"d{'qkv'[j // d]}{(j % d) // hd}.{(j % d) % hd}"

    def head(region: Region, h: int) -> str:  # head h's [T, T] block, absolute
        return region.block(tab, j0=h * (T + 1), j1=h * (T + 1) + T - 1)

    def head_row(region: Region, h: int, r: int) -> str:  # row r of head h's block: $C5:$R5
        c0 = region.head_left(h)
        return region.ref(tab) + a1.span(region.top + r, c0, region.top + r, c0 + T - 1, (False, False), (True, True))

    def part(region: Region, which: int, h: int) -> str:  # q (0), k (1) or v (2) of head h, or a head's columns
        return region.block(tab, j0=which * d + h * hd, j1=which * d + (h + 1) * hd - 1)

    # dweights_h = dheads_h v_h^T; dscores = P * (dP - rowsum(P * dP)): masked entries have P = 0
    dweights.array_fn = lambda: [
        (
            dweights.top,
            dweights.head_left(h),
            dweights.bottom,
            dweights.head_left(h) + T - 1,
            f"MMULT({part(dmerged, 0, h)},TRANSPOSE({part(qkv, 2, h)}))",
        )
        for h in range(H)
    ]
    dscores.formula = lambda r, j: (
        f"{weights.at(r, j, tab)}*({dweights.at(r, j, tab)}-SUMPRODUCT({head_row(weights, j // (T + 1), r)},"
        f"{head_row(dweights, j // (T + 1), r)}))"
    )
    # dq_h = dscores_h k_h / sqrt(hd), dk_h = dscores_h^T q_h / sqrt(hd), dv_h = P_h^T dheads_h
    dqkv.array_fn = lambda: [
        (dqkv.top, dqkv.left + which * d + h * hd, dqkv.bottom, dqkv.left + which * d + (h + 1) * hd - 1, text)
        for h in range(H)
        for which, text in (
            (0, f"MMULT({head(dscores, h)},{part(qkv, 1, h)})/SQRT({hd})"),
            (1, f"MMULT(TRANSPOSE({head(dscores, h)}),{part(qkv, 0, h)})/SQRT({hd})"),
            (2, f"MMULT(TRANSPOSE({head(weights, h)}),{part(dmerged, 0, h)})"),
        )
    ]
    dln_1 = times_transpose(Region(f"{prefix}d{p}.ln_1.out", tab, 0, T, d), dqkv, weight_range(c, f"{p}.attn.c_attn.w"))
    dx_name = f"{prefix}dh.{i - 1}.res_2" if i > 0 else f"{prefix}dembed.h"
    ln_1 = layer_norm_backward(layout, placed, f"{p}.ln_1", f"{p}.ln_1", dln_1, dx_name, dres_1, tab, prefix)
    return [dgelu, dfc, dln_2, *ln_2, dmerged, dweights, dscores, dqkv, dln_1, *ln_1]


def write(out: BookWriter, tab: Tab) -> int:
    """On top: the prediction explained (token and probability) and each token's score as a heatmap;
    then the regions, in the order they compute."""
    count = cells.write_compute_tab(out, tab)
    ws, fmt, layout = out.sheet(tab), out.fmt, out.layout
    texts = layout.texts["saliency"] if layout.texts.has_section("saliency") else {}
    ws.write_string(0, 0, texts.get("title", NAME), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    pred, total, score = (layout.region(n) for n in ("sal.id", "sal.sum", "sal.score"))
    tid = int(out.cached("sal.id").ravel()[0])
    ws.write_string(2, 0, "explains", fmt.label)
    shown = vocab.display_range(layout.config.vocab_size)
    token = out.tokenizer.display(tid)
    ws.write_formula(2, 2, f"=INDEX({shown},{pred.at(0, 0, NAME)}+1)", fmt.token, token)
    ws.write_string(3, 0, "probability", fmt.label)
    p = 1 / float(out.cached("sal.sum").ravel()[0])
    ws.write_formula(3, 2, f"=1/{total.at(0, 0, NAME)}", fmt.number("0.0%"), p)
    for col, label in enumerate(["pos", "token", "saliency"]):
        ws.write_string(SUMMARY_TOP - 1, col, label, fmt.header)
    scores = out.cached("sal.score")[:, 0]
    num = fmt.number("0.000")
    for t in range(layout.T):
        r = SUMMARY_TOP + t
        ws.write_number(r, 0, t, fmt.label)
        ws.write_formula(r, 1, "=" + prompt_tab.text_ref(t), fmt.token, out.prompt.texts[t])
        ws.write_formula(r, 2, f"={score.at(t, 0, NAME)}", num, 0 if np.isnan(scores[t]) else float(scores[t]))
    heat = {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#C00000", "min_type": "num", "min_value": 0}
    ws.conditional_format(SUMMARY_TOP, 2, SUMMARY_TOP + layout.T - 1, 2, heat)
    ws.conditional_format(score.top, score.left, score.bottom, score.left, heat)
    return count + 2 + layout.T
