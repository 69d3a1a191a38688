"""The block tabs (Block 0, Block 1, ...): one transformer block each, its steps top to bottom.

ln_1, c_attn (q, k, v), attention scores, causal mask, softmax (exp, weights), merged heads,
c_proj, residual; ln_2, c_fc, gelu, c_proj, residual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from .. import cells
from ..layout import COMPUTE, DATA_COL, Layout, Region, Tab, stack
from ..ops import layer_norm, linear

if TYPE_CHECKING:
    from ..output import BookWriter


TOO_BIG = "lower --context"  # book.limits' advice: a block tab grows with the token rows
_LN = ("mean", "var", "norm", "out")
# Exercise families (sheetgpt.exercises): stage names without "h.N." (each block's).
EXERCISES = {
    "layer_norm": tuple(f"{ln}.{s}" for ln in ("ln_1", "ln_2") for s in _LN),
    "variance": ("ln_1.var", "ln_2.var"),
    "attention": ("attn.scores", "attn.masked", "attn.exp", "attn.weights", "attn.merged"),
    "mask": ("attn.masked",),
    "softmax": ("attn.exp", "attn.weights"),
    "linear": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    "gelu": ("mlp.gelu",),
    "mlp": ("mlp.c_fc", "mlp.gelu", "mlp.c_proj"),
    "residual": ("res_1", "res_2"),
}


def name(i: int) -> str:
    return f"Block {i}"


def output(layout: Layout, placed: dict[str, Region]) -> Region:
    """The residual stream after the last block (the embeddings if there is none)."""
    n = layout.config.n_layer
    return placed[f"h.{n - 1}.res_2"] if n else placed["embed.h"]


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    out, x = [], placed["embed.h"]
    for i in range(layout.config.n_layer):
        out.append(_block(layout, i, x, placed.get("steer.add")))
        x = out[-1].regions[-1]
    return out


def _block(layout: Layout, i: int, x: Region, add: Region | None = None) -> Tab:
    c, tab, T = layout.config, name(i), layout.T
    d, H, hd = c.n_embd, c.n_head, c.head_dim
    p = f"h.{i}"
    steered = []
    if add is not None:  # activation steering: the Steering tab's row for this block, added to every row
        inp = Region(f"{p}.in", tab, 0, T, d)
        prev = x
        inp.formula = lambda t, j: (
            f"{prev.at(t, j, tab)}+{add.ref(tab)}{a1.cell(add.top + i, add.left + j, row_abs=True)}"
        )
        steered, x = [inp], inp
    ln_1 = layer_norm(layout, tab, f"{p}.ln_1", x)
    qkv = linear(layout, tab, f"{p}.attn.c_attn", ln_1[-1], 3 * d)
    qkv.col_header = lambda j: f"{'qkv'[j // d]}{(j % d) // hd}.{(j % d) % hd}"
    heads = dict(heads=H, block_cols=T, header_rows=3)  # head number, key token, key position
    scores = Region(f"{p}.attn.scores", tab, 0, T, T, **heads)
    masked = Region(f"{p}.attn.masked", tab, 0, T, T, **heads)
    exp = Region(f"{p}.attn.exp", tab, 0, T, T, **heads)
    weights = Region(f"{p}.attn.weights", tab, 0, T, T, heatmap=True, **heads)
    merged = Region(f"{p}.attn.merged", tab, 0, T, d, col_header=lambda j: f"h{j // hd}.{j % hd}")
    proj = linear(layout, tab, f"{p}.attn.c_proj", merged, d)
    res_1 = Region(f"{p}.res_1", tab, 0, T, d)
    ln_2 = layer_norm(layout, tab, f"{p}.ln_2", res_1)
    fc = linear(layout, tab, f"{p}.mlp.c_fc", ln_2[-1], 4 * d)
    gelu = Region(f"{p}.mlp.gelu", tab, 0, T, 4 * d)
    mlp_proj = linear(layout, tab, f"{p}.mlp.c_proj", gelu, d)
    res_2 = Region(f"{p}.res_2", tab, 0, T, d)
    regions = [
        *steered,
        *ln_1,
        qkv,
        scores,
        masked,
        exp,
        weights,
        merged,
        proj,
        res_1,
        *ln_2,
        fc,
        gelu,
        mlp_proj,
        res_2,
    ]
    stack(regions)

    def head_cols(region: Region, h: int, i: int) -> str:  # row i of head h's block: $C5:$R5
        c0 = region.head_left(h)
        return a1.span(region.top + i, c0, region.top + i, c0 + region.block_cols - 1, (False, False), (True, True))

    def qkv_block(which: int, h: int, last: int = T - 1) -> str:  # q (0), k (1) or v (2) of head h: [last + 1, hd]
        return qkv.block(tab, 0, last, which * d + h * hd, which * d + (h + 1) * hd - 1)

    def col(j: int) -> int:  # all head regions share the same columns
        return DATA_COL + j

    # Each head is its own CSE array: {=MMULT(q_h, TRANSPOSE(k_h))/SQRT(hd)}; in a generating book one
    # per row and head over the keys it may see, {=MMULT(q_h row t, TRANSPOSE(k_h rows 0..t))/SQRT(hd)}
    if layout.generate:
        scores.array_fn = lambda: [
            (
                scores.top + t,
                scores.head_left(h),
                scores.top + t,
                scores.head_left(h) + t,
                f"MMULT({qkv.block(tab, t, t, h * hd, (h + 1) * hd - 1)},TRANSPOSE({qkv_block(1, h, t)}))/SQRT({hd})",
            )
            for t in range(T)
            for h in range(H)
        ]
    else:
        scores.array_fn = lambda: [
            (
                scores.top,
                scores.head_left(h),
                scores.bottom,
                scores.head_left(h) + T - 1,
                f"MMULT({qkv_block(0, h)},TRANSPOSE({qkv_block(1, h)}))/SQRT({hd})",
            )
            for h in range(H)
        ]
    key_pos = masked.header_row  # the key positions
    masked.formula = lambda i, j: (
        f'IF({a1.cell(key_pos, col(j), True)}>{a1.cell(masked.top + i, 0, col_abs=True)},"",'
        f"{a1.cell(scores.top + i, col(j))})"
    )
    exp.formula = lambda i, j: (
        f"IF(ISNUMBER({a1.cell(masked.top + i, col(j))}),"
        f"EXP({a1.cell(masked.top + i, col(j))}-MAX({head_cols(masked, j // (T + 1), i)})),0)"
    )
    weights.formula = lambda i, j: f"{a1.cell(exp.top + i, col(j))}/SUM({head_cols(exp, j // (T + 1), i)})"
    if layout.generate:  # row t: {=MMULT(weights_h row t, keys 0..t, v_h rows 0..t)}
        merged.array_fn = lambda: [
            (
                merged.top + t,
                merged.left + h * hd,
                merged.top + t,
                merged.left + (h + 1) * hd - 1,
                f"MMULT({weights.block(tab, t, t, h * (T + 1), h * (T + 1) + t)},{qkv_block(2, h, t)})",
            )
            for t in range(T)
            for h in range(H)
        ]
    else:
        merged.array_fn = lambda: [
            (
                merged.top,
                merged.left + h * hd,
                merged.bottom,
                merged.left + (h + 1) * hd - 1,
                f"MMULT({weights.block(tab, j0=h * (T + 1), j1=h * (T + 1) + T - 1)},{qkv_block(2, h)})",
            )
            for h in range(H)
        ]
    res_1.formula = lambda i, j: f"{x.at(i, j, tab)}+{proj.at(i, j, tab)}"

    def fc_at(i: int, j: int) -> str:
        return a1.cell(fc.top + i, fc.left + j)

    gelu.formula = lambda i, j: f"0.5*{fc_at(i, j)}*(1+TANH(SQRT(2/PI())*({fc_at(i, j)}+0.044715*{fc_at(i, j)}^3)))"
    res_2.formula = lambda i, j: f"{res_1.at(i, j, tab)}+{mlp_proj.at(i, j, tab)}"
    return Tab(tab, COMPUTE, regions)


def write(out: BookWriter, tab: Tab) -> int:
    return cells.write_compute_tab(out, tab)
