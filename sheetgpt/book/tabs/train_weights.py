"""The training book's parameter-shaped tabs (``sheetgpt build --train``; the Train tab is sheetgpt/book/tabs/train.py).

For every parameter W, two tabs laid out exactly like its weight tab (cell B3 of ``d wte`` is the
gradient of cell B3 of ``wte``):

- ``d W``: the gradient of the Train tab's loss. A linear layer's weight is one CSE array
  ``{=MMULT(TRANSPOSE(x), d out)}``, its bias the column sums of d out; a layer norm's g is
  ``SUMPRODUCT(d out, normalized)`` per column, its b the column sums; wpe's first T rows are d embed.h
  (the rows below: 0, no position there); wte, tied, collects the unembedding's share
  ``d logits x ln_f.last`` and the embedding's ``onehot x d embed.h`` (a token used twice adds both rows).
- ``new W``: ``{=W - lr * dW}``, one CSE array over the tab, with the Train tab's learning rate used.

Then the forward pass over the updated parameters (``Embed after``, ..., ``Logits after``; train.after_tabs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import a1
from ...checkpoint import param_shapes
from .. import cells
from ..layout import COMPUTE, Layout, Region, Tab, weight_range, weight_tab_shape
from . import train

if TYPE_CHECKING:
    from ..output import BookWriter

TOO_BIG = train.TOO_BIG


def _col(region: Region, j: int, tab: str) -> str:
    """Column j of a region's data, absolute: 'Block 0'!$C$5:$C$10."""
    return region.ref(tab) + a1.span(region.top, region.left + j, region.bottom, region.left + j)


def _gradient(layout: Layout, placed: dict[str, Region], param: str, region: Region) -> None:
    """Give ``region`` (the gradient tab's one region) its formulas."""
    T, tab = layout.T, region.tab
    box = (region.top, region.left, region.bottom, region.right)

    def cse(text: str) -> None:
        region.array_fn = lambda: [(*box, text)]

    if param == "wte":  # the unembedding's share (only the predicting row's logits) and the embedding's
        dlogits, last = placed["nll.dlogits"], placed["ln_f.last"]
        onehot, dembed = placed["nll.onehot"], placed["nll.dembed.h"]
        return cse(f"MMULT({dlogits.block(tab)},{last.block(tab)})+MMULT({onehot.block(tab)},{dembed.block(tab)})")
    if param == "wpe":
        dembed = placed["nll.dembed.h"]
        region.formula = lambda i, j: dembed.at(i, j, tab) if i < T else "0"
        return None
    prefix, _, leaf = param.rpartition(".")  # h.0.attn.c_attn, w / h.0.ln_1, g / ln_f, b
    if prefix.endswith(("ln_1", "ln_2")) or prefix == "ln_f":  # out = norm * g + b
        dout = placed[f"nll.d{prefix}.out"]
        norm = placed[f"{prefix}.norm"]
        if leaf == "g":
            region.formula = lambda i, j: f"SUMPRODUCT({_col(dout, j, tab)},{_col(norm, j, tab)})"
        else:
            region.formula = lambda i, j: f"SUM({_col(dout, j, tab)})"
        return None
    i = int(prefix.split(".")[1])
    x, dout = {
        "attn.c_attn": (f"h.{i}.ln_1.out", f"nll.dh.{i}.attn.c_attn"),
        "attn.c_proj": (f"h.{i}.attn.merged", f"nll.dh.{i}.res_1"),
        "mlp.c_fc": (f"h.{i}.ln_2.out", f"nll.dh.{i}.mlp.c_fc"),
        "mlp.c_proj": (f"h.{i}.mlp.gelu", f"nll.dh.{i}.res_2"),
    }[prefix.split(".", 2)[2]]
    xr, dr = placed[x], placed[dout]
    if leaf == "w":
        return cse(f"MMULT(TRANSPOSE({xr.block(tab)}),{dr.block(tab)})")
    region.formula = lambda i, j: f"SUM({_col(dr, j, tab)})"
    return None


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not train.wanted(layout):
        return []
    c = layout.config
    grads, news = [], []
    lr = a1.sheet_prefix(train.NAME) + a1.cell(train.LR_USED_ROW, train.VALUE_COL, True, True)
    for param, shape in param_shapes(c).items():
        rows, cols = weight_tab_shape(shape)
        g = Region(f"grad.{param}", train.grad_tab(param), 0, rows, cols, left=0, number_format="0.000000")
        _gradient(layout, placed, param, g)
        grads.append(Tab(g.tab, COMPUTE, [g]))
        n = Region(f"new.{param}", train.new_tab(param), 0, rows, cols, left=0, number_format="0.000000")
        dw = train.tab_range(c, g.tab, param)
        n.array_fn = lambda n=n, param=param, dw=dw: [
            (n.top, n.left, n.bottom, n.right, f"{weight_range(c, param)}-{lr}*{dw}")
        ]
        news.append(Tab(n.tab, COMPUTE, [n]))
    return [*grads, *news, *train.after_tabs(layout, placed)]


def write(out: BookWriter, tab: Tab) -> int:
    """Laid out like the weight tab: no frame, the region's numbers from A1; its explanation as a note.
    The tabs of the forward pass after the step: as the forward tabs."""
    if tab.name.endswith(train.AFTER):
        return cells.write_compute_tab(out, tab)
    ws = out.sheet(tab)
    (region,) = tab.regions
    count = train.write_cells(out, ws, region)
    texts = out.layout.texts
    key = "grad" if region.name.startswith("grad.") else "new"
    if texts.has_section(key):
        cells.note(ws, 0, 0, texts[key]["explain"])
    cells.define_names(out, tab)
    out.done(tab)
    return count
