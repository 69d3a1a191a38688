"""Regions that several tabs compute the same way: a layer norm (four stages) and a linear layer (one CSE array)."""

from __future__ import annotations

from .. import a1
from .layout import Layout, Region, weight_range


def layer_norm(layout: Layout, tab: str, name: str, x: Region, params: str | None = None) -> list[Region]:
    """mean, variance, normalized, scale/shift of each row of x, with the g and b of ``params`` (default: name)."""
    d, eps, rows = layout.config.n_embd, layout.config.layer_norm_epsilon, x.rows
    mean = Region(f"{name}.mean", tab, 0, rows, 1)
    var = Region(f"{name}.var", tab, 0, rows, 1, number_format="0.000000")
    norm = Region(f"{name}.norm", tab, 0, rows, d)
    out = Region(f"{name}.out", tab, 0, rows, d)
    mean.formula = lambda i, j: f"AVERAGE({x.row(i, tab)})"
    var.formula = lambda i, j: f"_xlfn.VAR.P({x.row(i, tab)})"
    norm.formula = lambda i, j: (
        f"({x.at(i, j, tab)}-{mean.at(i, 0, tab, col_abs=True)})/SQRT({var.at(i, 0, tab, col_abs=True)}+{eps:G})"
    )
    # one-row weight tabs: column j, row 1
    g, b = a1.sheet_prefix(f"{params or name}.g"), a1.sheet_prefix(f"{params or name}.b")
    out.formula = lambda i, j: f"{norm.at(i, j, tab)}*{g}{a1.cell(0, j, True)}+{b}{a1.cell(0, j, True)}"
    return [mean, var, norm, out]


def linear(layout: Layout, tab: str, name: str, x: Region, n_out: int) -> Region:
    """CSE: {=MMULT(x, w) + b} over the whole [T, n_out] rectangle; in a generating book one such array
    per row, {=MMULT(x row t, w) + b}, so that row t reads no later row."""
    out = Region(name, tab, 0, layout.T, n_out)
    w, b = weight_range(layout.config, name + ".w"), weight_range(layout.config, name + ".b")
    if layout.generate:
        out.array_fn = lambda: [
            (out.top + i, out.left, out.top + i, out.right, f"MMULT({x.row(i, tab)},{w})+{b}") for i in range(out.rows)
        ]
    else:
        out.array_fn = lambda: [(out.top, out.left, out.bottom, out.right, f"MMULT({x.block(tab)},{w})+{b}")]
    return out
