"""Grading an exercise book: each exercise passes, fails (with a diagnosis where the mistake is a known
one), or is not done yet; stages after it that fail only because of it say so.

The grade depends on values; formula text only names a diagnosis. ``sheetgpt check`` has recomputed
every formula (the learner's too); for each exercise region (``exercises.read_back``) this module

* counts its cells: a formula, a constant (a pasted number is "value, not a formula"), or empty;
* fails a cell whose formula gives an error value its inputs do not explain (an unknown name or
  function, a cycle, LibreOffice's intersection syntax: ``formula_diagnosis``);
* recomputes the stage from the values the region itself reads in the book (``STAGES``: the stage's
  math, with the reference's functions where it has one; what it reads is what the book's formulas
  read, ``exercises.read_graph``), so that a region that is right for its (wrong) inputs is told
  apart from a region that is wrong;
* where the learner's values are wrong, recomputes the stage with each known mistake (``MISTAKES``)
  from the same inputs, and names the one the learner's values match.

A stage that is not an exercise but fails is "follows from exercise X" when an exercise it reads
(directly or through other stages) is wrong or not done, and its own values are what its math gives
on the book's inputs (or, for stages without math here, when it reads such an exercise at all).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import a1, exercises
from .a1 import cell as cell_name
from .book.layout import Layout, Region
from .engine.parser import Ref, parse, walk
from .engine.reader import Book
from .engine.values import BOOL, Values
from .errors import WorkbookError
from .reference import gelu, layer_norm, linear, softmax_steps

MATCH_RTOL = 1e-7  # a mistake matches when every wrong cell is within this (relative to the stage's scale)

PASS, FAIL, NOT_DONE = "pass", "fail", "not done yet"


@dataclass
class Inputs:
    """What a stage reads, from the book's recomputed values (stages) and weight tabs (params)."""

    layout: Layout
    values: Values
    weights: dict[str, np.ndarray]
    name: str  # the stage being computed
    graph: dict[str, set[str]]  # each stage -> the stages it reads (exercises.read_graph)

    incomplete: bool = False  # an input holds no number where one belongs and no error (empty, text, TRUE)

    def stage(self, name: str) -> np.ndarray:
        """A stage's values as the book computed them, in the reference's shape: NaN where a cell holds
        no number. An error value is NaN too, and NaN carries through the math as an error carries
        through a spreadsheet's formulas; an empty cell, a text or a boolean where a number belongs
        makes the inputs ``incomplete`` (what a function makes of them depends on the function)."""
        region = self.layout.region(name)
        value = ungrid(region, number_grid(self.values, region))
        missing = np.isnan(value) & ~ungrid(region, error_grid(self.values, region))
        if not name.endswith("attn.masked") and missing.any():
            self.incomplete = True
        return value

    def reads(self) -> list[str]:
        """The stages this stage's formulas read, as the book's own formulas say (``exercises.read_graph``)."""
        return sorted(self.graph.get(self.name, ()))

    def part(self, suffix: str) -> np.ndarray:
        """The stage it reads whose name ends with ``suffix`` ('.mean', '.c_proj', ...)."""
        found = [n for n in self.reads() if n.endswith(suffix)]
        if len(found) != 1:
            raise KeyError(f"{self.name} reads no single stage *{suffix}")
        return self.stage(found[0])

    def input(self) -> np.ndarray:
        """The one stage it reads that is not one of its named parts: the stream it transforms (the
        residual entering a layer norm or a residual add, steered or not; a linear layer's input)."""
        found = [n for n in self.reads() if not n.endswith(_PARTS)]
        if len(found) != 1:
            raise KeyError(f"{self.name} reads {found}, not one input")
        return self.stage(found[0])

    def param(self, name: str) -> np.ndarray:
        return np.asarray(self.weights[name], dtype=np.float64)


def number_grid(values: Values, region: Region) -> np.ndarray:
    """The numbers of a region, NaN where there is none; a boolean (``=TRUE()``) is not a number here,
    as SUM over a range skips it (the fast engine keeps booleans apart; LibreOffice stores 1 and 0)."""
    grid = values.number_grid(region)
    kinds = (values.kinds or {}).get(region.tab)
    if kinds is not None:
        k = np.full(grid.shape, -1, np.int8)
        sub = kinds[region.top : region.bottom + 1, region.left : region.right + 1]
        k[: sub.shape[0], : sub.shape[1]] = sub
        grid = np.where(k == BOOL, np.nan, grid)
    return grid


def error_grid(values: Values, region: Region) -> np.ndarray:
    """Booleans [rows, width]: the region's cells that hold an error value."""
    out = np.zeros((region.rows, region.width), bool)
    for r, c in values.errors.get(region.tab, {}):
        if region.top <= r <= region.bottom and region.left <= c <= region.right:
            out[r - region.top, c - region.left] = True
    return out


def ungrid(region: Region, grid: np.ndarray) -> np.ndarray:
    """The inverse of Region.grid: a sheet rectangle [rows, width] in the reference's shape."""
    if not region.heads:
        return grid
    b = region.block_cols
    return np.stack([grid[:, h * (b + 1) : h * (b + 1) + b] for h in range(region.heads)])


# ---------------------------------------------------------------------------- each stage's math


_PARTS = (".mean", ".var", ".c_proj", ".weights", ".wte", ".wpe")  # what Inputs.input() is not


def _ln_param(inp: Inputs, p: str) -> np.ndarray:
    return inp.param(inp.name.rsplit(".", 1)[0] + "." + p)


def _eps(inp: Inputs) -> float:
    return inp.layout.config.layer_norm_epsilon


def _moments(inp: Inputs) -> dict:
    """The reference's layer norm of the stage's input: its mean and variance (``reference.layer_norm``)."""
    trace: dict = {}
    layer_norm(inp.input(), 1.0, 0.0, _eps(inp), trace, "ln")
    return trace


def _qkv(inp: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    qkv = inp.part(".c_attn") if not inp.name.endswith(".scores") else inp.input()
    T, d3 = qkv.shape
    d, H = d3 // 3, inp.layout.config.n_head
    return tuple(qkv[:, i * d : (i + 1) * d].reshape(T, H, d // H).transpose(1, 0, 2) for i in range(3))


def _linear(inp: Inputs, bias: bool = True) -> np.ndarray:
    return linear(inp.input(), inp.param(inp.name + ".w"), inp.param(inp.name + ".b") if bias else 0.0)


def _causal(T: int, k: int) -> np.ndarray:
    return np.triu(np.ones((T, T), dtype=bool), k=k)


def _mask(scores: np.ndarray, k: int = 1) -> np.ndarray:
    return np.where(_causal(scores.shape[-1], k), np.nan, scores)


def _exp(m: np.ndarray, axis: int = -1, subtract_max: bool = True) -> np.ndarray:
    top = np.nanmax(m, axis=axis, keepdims=True) if subtract_max else 0.0
    return np.where(np.isnan(m), 0.0, np.exp(m - top))


def _residual(inp: Inputs, with_x: bool = True) -> np.ndarray:
    f = inp.part(".c_proj")
    return inp.input() + f if with_x else f


def _norm(inp: Inputs, eps_inside: bool = True, root: bool = True, eps: bool = True, center: bool = True):
    x, var = inp.input(), inp.part(".var")
    e = _eps(inp) if eps else 0.0
    top = x - inp.part(".mean") if center else x
    if not root:
        return top / (var + e)
    return top / (np.sqrt(var + e) if eps_inside else np.sqrt(var) + e)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _merged(inp: Inputs) -> np.ndarray:
    w, (_, _, v) = inp.part(".weights"), _qkv(inp)
    heads = w @ v  # [H, T, hd]
    return heads.transpose(1, 0, 2).reshape(heads.shape[1], -1)


# ---- the Saliency tab's backward stages (sheetgpt/backward.py is their reference)


def _block_of(inp: Inputs) -> int:
    return int(inp.name.split(".")[1])


def _ln_backward(inp: Inputs, dmean: bool = True, dvar: bool = True) -> np.ndarray:
    """A layer norm's dx: (dnorm - dmean - norm * dvar) / SQRT(var + eps), plus the gradient the residual
    stream brings (dh.i.res_1: ln_2's, with dh.i.res_2; dh.i.res_2: block i+1's ln_1, or ln_f's for the
    last block, without; dembed.h: block 0's ln_1, with dh.0.res_1)."""
    name, n_layer = inp.name, inp.layout.config.n_layer
    if name == "dembed.h":
        ln, res = "h.0.ln_1", "dh.0.res_1"
    else:
        i = _block_of(inp)
        if name.endswith("res_1"):
            ln, res = f"h.{i}.ln_2", f"dh.{i}.res_2"
        elif i + 1 < n_layer:
            ln, res = f"h.{i + 1}.ln_1", f"dh.{i + 1}.res_1"
        else:
            ln, res = "ln_f", None
    dnorm, mean, var = (inp.stage(f"d{ln}.{p}") for p in ("dnorm", "dmean", "dvar"))
    norm, sd = inp.stage(f"{ln}.norm"), np.sqrt(inp.stage(f"{ln}.var") + _eps(inp))
    top = dnorm - (mean if dmean else 0.0) - (norm * var if dvar else 0.0)
    return top / sd + (inp.stage(res) if res else 0.0)


def _gelu_prime(x: np.ndarray) -> np.ndarray:
    c = math.sqrt(2 / math.pi)
    th = np.tanh(c * (x + 0.044715 * x**3))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)


def _gelu_backward(inp: Inputs, prime=_gelu_prime) -> np.ndarray:
    i = _block_of(inp)
    return inp.stage(f"dh.{i}.mlp.gelu") * prime(inp.stage(f"h.{i}.mlp.c_fc"))


def _erf_gelu_prime(x: np.ndarray) -> np.ndarray:  # Phi(x) + x phi(x)
    return 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _softmax_backward(inp: Inputs, rowsum: bool = True) -> np.ndarray:  # P * (dP - SUMPRODUCT(P row, dP row))
    i = _block_of(inp)
    p, dp = inp.stage(f"h.{i}.attn.weights"), inp.stage(f"dh.{i}.attn.weights")
    return p * (dp - ((p * dp).sum(-1, keepdims=True) if rowsum else 0.0))


def _heads(inp: Inputs, x: np.ndarray) -> np.ndarray:  # [T, d] -> [H, T, hd]
    T, d = x.shape
    H = inp.layout.config.n_head
    return x.reshape(T, H, d // H).transpose(1, 0, 2)


def _dweights(inp: Inputs) -> np.ndarray:  # dmerged_h v_h^T
    i = _block_of(inp)
    d = inp.layout.config.n_embd
    v = _heads(inp, inp.stage(f"h.{i}.attn.c_attn")[:, 2 * d :])
    return _heads(inp, inp.stage(f"dh.{i}.attn.merged")) @ v.transpose(0, 2, 1)


def _dqkv(inp: Inputs, scale: bool = True) -> np.ndarray:
    """dq = dscores k / sqrt(hd), dk = dscores^T q / sqrt(hd), dv = P^T dmerged, per head, side by side."""
    i = _block_of(inp)
    d = inp.layout.config.n_embd
    qkv = inp.stage(f"h.{i}.attn.c_attn")
    q, k = _heads(inp, qkv[:, :d]), _heads(inp, qkv[:, d : 2 * d])
    ds, p = inp.stage(f"dh.{i}.attn.scores"), inp.stage(f"h.{i}.attn.weights")
    s = 1 / math.sqrt(q.shape[-1]) if scale else 1.0
    dmerged = _heads(inp, inp.stage(f"dh.{i}.attn.merged"))
    parts = (ds @ k * s, ds.transpose(0, 2, 1) @ q * s, p.transpose(0, 2, 1) @ dmerged)
    return np.concatenate([x.transpose(1, 0, 2).reshape(x.shape[1], d) for x in parts], axis=1)


def _crossentropy_backward(inp: Inputs, sign: float = 1.0) -> np.ndarray:
    """The Train tab's d logits: P - onehot(k), P = EXP(logit - M) / S (sign -1: onehot(k) - P)."""
    logits = inp.stage("logits")  # [V, 1]
    k, s = inp.stage("nll.k")[0, 0], inp.stage("nll.sum")[0, 0]
    p = np.exp(logits - np.nanmax(logits)) / s
    onehot = (np.arange(logits.shape[0])[:, None] == k).astype(np.float64)
    return sign * (p - onehot)


_BACKWARD_STAGES: dict[str, Callable[[Inputs], np.ndarray]] = {
    "nll.dlogits": _crossentropy_backward,
    "dres_1": _ln_backward,
    "dres_2": _ln_backward,
    "dembed.h": _ln_backward,
    "dmlp.c_fc": _gelu_backward,
    "dattn.weights": _dweights,
    "dattn.scores": _softmax_backward,
    "dattn.c_attn": _dqkv,
}
_LN_MISTAKES = [
    (
        "the layer-norm backward without its mean terms: dx = (dnorm - mean(dnorm) - normalized x "
        "mean(dnorm x normalized)) / SQRT(variance + eps)",
        lambda i: _ln_backward(i, dmean=False, dvar=False),
    ),
    ("the layer-norm backward without mean(dnorm): subtract the row's dmean", lambda i: _ln_backward(i, dmean=False)),
    (
        "the layer-norm backward without normalized x dvar: subtract normalized x mean(dnorm x normalized)",
        lambda i: _ln_backward(i, dvar=False),
    ),
]
_BACKWARD_MISTAKES: dict[str, list[tuple[str, Callable[[Inputs], np.ndarray]]]] = {
    "nll.dlogits": [
        (
            "dp/p, the gradient of LN(p): the loss is -LN(p), so d logits = P - onehot(target), not onehot(target) - P",
            lambda i: _crossentropy_backward(i, -1.0),
        ),
    ],
    "dres_1": _LN_MISTAKES,
    "dres_2": _LN_MISTAKES,
    "dembed.h": _LN_MISTAKES,
    "dmlp.c_fc": [
        (
            "the erf GELU's derivative (PHI(x) + x phi(x)) where GPT-2's GELU is the tanh form: "
            "0.5 (1 + TANH(u)) + 0.5 x (1 - TANH(u)^2) SQRT(2/PI()) (1 + 3 x 0.044715 x^2)",
            lambda i: _gelu_backward(i, _erf_gelu_prime),
        ),
        ("GELU(x) where its derivative GELU'(x) belongs", lambda i: _gelu_backward(i, gelu)),
    ],
    "dattn.scores": [
        (
            "the softmax backward without its row sum: P x (dP - SUMPRODUCT(P row, dP row))",
            lambda i: _softmax_backward(i, rowsum=False),
        ),
    ],
    "dattn.c_attn": [
        (
            "a forgotten 1/sqrt(head_dim): dq and dk are divided by SQRT(head_dim), as the scores were",
            lambda i: _dqkv(i, scale=False),
        ),
    ],
}


# short stage name -> its math from the book's inputs (as the reference computes it)
STAGES: dict[str, Callable[[Inputs], np.ndarray]] = {
    "embed.h": lambda i: i.part(".wte") + i.part(".wpe"),
    "mean": lambda i: _moments(i)["ln.mean"],
    "var": lambda i: _moments(i)["ln.var"],
    "norm": _norm,
    "out": lambda i: i.input() * _ln_param(i, "g") + _ln_param(i, "b"),
    "attn.c_attn": _linear,
    "attn.scores": lambda i: (lambda q, k, v: q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1]))(*_qkv(i)),
    "attn.masked": lambda i: _mask(i.input()),
    "attn.exp": lambda i: softmax_steps(i.input())[0],
    "attn.weights": lambda i: (lambda e: e / e.sum(-1, keepdims=True))(i.input()),
    "attn.merged": _merged,
    "attn.c_proj": _linear,
    "res_1": _residual,
    "mlp.c_fc": _linear,
    "mlp.gelu": lambda i: gelu(i.input()),
    "mlp.c_proj": _linear,
    "res_2": _residual,
    **_BACKWARD_STAGES,
}

# short stage name -> the known mistakes: (what the learner did, its math from the same inputs)
MISTAKES: dict[str, list[tuple[str, Callable[[Inputs], np.ndarray]]]] = {
    "embed.h": [
        ("the position embedding is missing: GPT-2 adds wpe to wte", lambda i: i.part(".wte")),
        ("the token embedding is missing: GPT-2 adds wte to wpe", lambda i: i.part(".wpe")),
    ],
    "var": [
        (
            "sample variance (VAR.S, dividing by n-1) where GPT-2 uses the population variance (VAR.P, dividing by n)",
            lambda i: i.input().var(-1, ddof=1, keepdims=True),
        ),
        (
            "the mean of the squares without subtracting the mean first",
            lambda i: (i.input() ** 2).mean(-1, keepdims=True),
        ),
        ("the standard deviation (STDEV.P) where the variance belongs", lambda i: i.input().std(-1, keepdims=True)),
    ],
    "norm": [
        (
            "eps is added outside the square root: GPT-2 divides by SQRT(variance + eps)",
            lambda i: _norm(i, eps_inside=False),
        ),
        (
            "eps is missing: GPT-2 divides by SQRT(variance + eps)",
            lambda i: _norm(i, eps=False),
        ),
        (
            "divided by the variance, not by its square root",
            lambda i: _norm(i, root=False),
        ),
        (
            "the mean is not subtracted",
            lambda i: _norm(i, center=False),
        ),
    ],
    "out": [
        ("a missing bias: add the layer norm's b", lambda i: i.input() * _ln_param(i, "g")),
        ("a missing gain: multiply by the layer norm's g", lambda i: i.input() + _ln_param(i, "b")),
    ],
    "attn.scores": [
        (
            "a missing 1/sqrt(head_dim): divide q.k by SQRT(head_dim)",
            lambda i: (lambda q, k, v: q @ k.transpose(0, 2, 1))(*_qkv(i)),
        ),
        (
            "divided by head_dim where GPT-2 divides by SQRT(head_dim)",
            lambda i: (lambda q, k, v: q @ k.transpose(0, 2, 1) / q.shape[-1])(*_qkv(i)),
        ),
    ],
    "attn.masked": [
        (
            "the mask lets a row see the next position: blank the keys after the query (key position > query position)",
            lambda i: _mask(i.input(), 2),
        ),
        ("the mask also hides the diagonal: a token may attend to itself", lambda i: _mask(i.input(), 0)),
        ("no causal mask: later positions are not blanked", lambda i: i.input()),
    ],
    "attn.exp": [
        (
            "the maximum is taken over the wrong axis (the column, not the row)",
            lambda i: _exp(i.input(), axis=-2),
        ),
        ("the row's maximum is not subtracted", lambda i: _exp(i.input(), subtract_max=False)),
    ],
    "attn.weights": [
        (
            "softmax over the wrong axis: each row (query) must add up to 1, not each column",
            lambda i: (lambda e: e / e.sum(-2, keepdims=True))(i.input()),
        ),
    ],
    "mlp.gelu": [
        (
            "erf GELU (0.5*x*(1+ERF(x/SQRT(2)))) where GPT-2 uses the tanh approximation",
            lambda i: (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))))(i.input()),
        ),
        (
            "the sigmoid approximation x*sigmoid(1.702x) where GPT-2 uses the tanh form",
            lambda i: (lambda x: x / (1 + np.exp(-1.702 * x)))(i.input()),
        ),
        ("ReLU where GPT-2 uses GELU", lambda i: np.maximum(i.input(), 0.0)),
    ],
    "res_1": [("a missing residual: add the block's input x", lambda i: _residual(i, with_x=False))],
    "res_2": [("a missing residual: add res_1", lambda i: _residual(i, with_x=False))],
}
MISTAKES |= _BACKWARD_MISTAKES
for _linear_stage in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
    MISTAKES[_linear_stage] = [("a missing bias: add the layer's b", lambda i: _linear(i, bias=False))]


def quietly(fn, inp: Inputs) -> np.ndarray:
    """``fn(inp)`` without numpy's warnings: NaN inputs (errors, blanks) are expected here."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(inp)


def _kind(stage: str) -> str:
    short = exercises.short_name(stage)
    if short.startswith(("ln_1.", "ln_2.", "ln_f.")):
        short = short.split(".", 1)[1]
    return short


def stage_math(stage: str):
    return STAGES.get(_kind(stage)) if _kind(stage) not in ("select", "last") else None


# ---------------------------------------------------------------------------- grading


def cell_states(book: Book, region: Region, formula_cells: set) -> tuple[np.ndarray, np.ndarray]:
    """(has a formula, holds a constant) for each cell of the region, [rows, width] booleans."""
    sheet = book.sheets[region.tab]
    H, W = region.rows, region.width
    formula = np.zeros((H, W), bool)
    const = np.zeros((H, W), bool)
    for r, c in formula_cells:
        if region.top <= r <= region.bottom and region.left <= c <= region.right:
            formula[r - region.top, c - region.left] = True
    rows, cols, _ = sheet.numbers
    m = (rows >= region.top) & (rows <= region.bottom) & (cols >= region.left) & (cols <= region.right)
    const[rows[m] - region.top, cols[m] - region.left] = True
    for table in (sheet.strings, sheet.booleans, sheet.errors):
        for (r, c), _v in table.items():
            if region.top <= r <= region.bottom and region.left <= c <= region.right:
                const[r - region.top, c - region.left] = True
    return formula, const & ~formula


def formula_cells(book: Book, sheet: str) -> set:
    return {(r, c) for r, c, _t, ref in book.sheets[sheet].formulas for r, c in _cells(r, c, ref)}


def _cells(r, c, ref):
    if ref is None:
        return [(r, c)]
    r0, c0, r1, c1 = ref
    return [(i, j) for i in range(r0, r1 + 1) for j in range(c0, c1 + 1)]


def _close(a: np.ndarray, b: np.ndarray, scale: float, rtol: float) -> np.ndarray:
    both_blank = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        return both_blank | (np.abs(a - b) <= rtol * scale)


def compare(region: Region, got: np.ndarray, want: np.ndarray, rtol: float) -> tuple[np.ndarray, float]:
    """Cells (of region.columns()) that equal ``want`` (reference shape), and the scale used."""
    cols = region.columns()
    g, w = got[:, cols], region.grid(want)[:, cols]
    scale = float(np.nanmax(np.abs(w))) if np.isfinite(w).any() else 1.0
    return _close(g, w, scale or 1.0, rtol), scale or 1.0


def agrees(region: Region, values: Values, want: np.ndarray, rtol: float, trace: dict) -> np.ndarray:
    """Cells of the region (its columns) whose values are ``want`` (the reference's shape). Where
    ``want`` is NaN because an input is an error, the cell agrees only if it holds an error too (a
    formula passes an error on); a cell the book leaves blank by design (masked scores) agrees blank."""
    ok, _ = compare(region, number_grid(values, region), want, max(rtol, MATCH_RTOL))
    cols = region.columns()
    design = np.isnan(region.grid(trace[region.name]))[:, cols] if region.name in trace else np.zeros_like(ok)
    passed_on = np.isnan(region.grid(want))[:, cols] & ~design
    return ok & (~passed_on | error_grid(values, region)[:, cols])


def diagnose(inp: Inputs, region: Region, right: np.ndarray, rtol: float, trace: dict) -> str | None:
    """The known mistake the learner's values match (every cell right or as the mistake gives it), or None."""
    for text, fn in MISTAKES.get(_kind(region.name), []):
        try:
            cand = quietly(fn, inp)
        except (KeyError, ValueError, IndexError):
            continue
        ok = agrees(region, inp.values, cand, rtol, trace)
        if ok.all() or (ok | right).all() and (ok & ~right).any():
            return text
    return None


def refuse_problems(layout: Layout, book: Book, values: Values) -> None:
    """Raise the first formula the engine could not compute (``Values.problems``) that lies outside
    every exercise region, as ``check`` refuses it in any book; one inside an exercise is graded."""
    regions = [layout.region(n) for n in exercises.read_back(book, layout)]
    for p in values.problems:
        if not any(_inside(regions, sheet, r, c) is not None for sheet, r, c in p.cells()):
            raise WorkbookError(p.text)


def _inside(regions: list[Region], sheet: str, r: int, c: int) -> Region | None:
    return next((g for g in regions if g.tab == sheet and g.top <= r <= g.bottom and g.left <= c <= g.right), None)


def grade(layout: Layout, book: Book, values: Values, weights: dict, trace: dict, stages: list, rtol: float) -> list:
    """Grade the book's exercises (``exercises.read_back``); note on ``stages`` (check's StageResults,
    changed in place) what each failing one follows from. Returns one dict per exercise: stage, tab,
    cells, filled, status (pass / fail / not done yet), and where it applies message, first_bad,
    diagnosis, follows."""
    names = exercises.read_back(book, layout)
    if not names:
        return []
    graph = exercises.read_graph(layout)
    by_name = {s.stage: s for s in stages}
    fcells: dict[str, set] = {}
    results = []
    for name in names:
        region = layout.region(name)
        if region.tab not in fcells:
            fcells[region.tab] = formula_cells(book, region.tab)
        has_f, has_c = cell_states(book, region, fcells[region.tab])
        cols = region.columns()
        has_f, has_c = has_f[:, cols], has_c[:, cols]
        may_be_empty = np.isnan(region.grid(trace[name])[:, cols])  # masked scores: blank is right
        res = {"stage": name, "tab": region.tab, "cells": int(has_f.size), "filled": int((has_f | has_c).sum())}
        stage = by_name[name]
        broken = _broken(layout, book, values, weights, region, graph) & has_f
        if has_c.any():
            i, k = (int(x) for x in np.argwhere(has_c)[0])
            res |= {
                "status": FAIL,
                "message": f"value, not a formula: {_where(region, i, cols[k])} holds a constant; "
                "write a formula that computes it",
            }
        elif broken.any():
            i, k = (int(x) for x in np.argwhere(broken)[0])
            res |= _broken_cell(layout, book, values, region, region.top + i, region.left + cols[k], trace[name])
        elif not (has_f | may_be_empty).all():
            res |= {"status": NOT_DONE, "message": f"{int(has_f.sum())} of {has_f.size} cells filled"}
        elif stage.passed:
            res["status"] = PASS
        else:
            res |= _explain(layout, values, weights, region, stage, rtol, graph, trace)
        results.append(res)
    bad = [r["stage"] for r in results if r["status"] != PASS]
    for res in results:
        stage = by_name[res["stage"]]
        if res.get("follows") is not None:  # right for its inputs: an earlier exercise is wrong
            res["follows"] = [n for n in bad if n in exercises.upstream(graph, res["stage"])]
            stage.note = "right for its inputs; follows from exercise " + ", ".join(res["follows"] or ["?"])
        else:
            stage.note = "exercise: " + ("wrong" if res["status"] == FAIL else res["status"])
    _attribute(layout, values, weights, stages, graph, set(names), bad, trace)
    return results


def _broken(layout: Layout, book: Book, values: Values, weights: dict, region: Region, graph: dict) -> np.ndarray:
    """Cells of the region (its columns) whose formula gives an error value that its inputs do not
    explain: where the stage's math on the values it reads is a number, or, for a stage without math
    here, where the engine found the formula itself broken (an unknown name or function, a cycle)."""
    cols = region.columns()
    err = error_grid(values, region)
    math_ = stage_math(region.name)
    if math_ is not None:
        inp = Inputs(layout, values, weights, region.name, graph)
        try:
            want = region.grid(quietly(math_, inp))
        except (KeyError, ValueError, IndexError):
            want = None
        if want is not None and not inp.incomplete:
            return (err & np.isfinite(want))[:, cols]
    own = np.zeros_like(err)
    for p in values.problems:
        for sheet, r, c in p.cells():
            if sheet == region.tab and region.top <= r <= region.bottom and region.left <= c <= region.right:
                own[r - region.top, c - region.left] = True
    return (err & own)[:, cols]


def _broken_cell(layout: Layout, book: Book, values: Values, region: Region, r: int, c: int, want) -> dict:
    """A FAIL naming a cell whose formula gives an error value: what it gives, why where the engine
    knows (``Values.problems``), and a diagnosis of the formula where one applies."""
    text = _formula_at(book, region.tab, r, c)
    got = values.describe(region.tab, r, c)
    grid = region.grid(want)
    expected = grid[r - region.top, c - region.left]
    out = {
        "status": FAIL,
        "first_bad": {
            "cell": f"'{region.tab}'!{cell_name(r, c)}",
            "formula": text,
            "got": got,
            "expected": "blank (masked)" if np.isnan(expected) else float(expected),
        },
    }
    problem = next((p for p in values.problems if (region.tab, r, c) in set(p.cells())), None)
    if problem is not None:
        out["message"] = problem.message
    diagnosis = formula_diagnosis(book, text, region.tab, r, c, problem.message if problem else str(got))
    if diagnosis:
        out["diagnosis"] = diagnosis
    return out


def _formula_at(book: Book, sheet: str, r: int, c: int) -> str:
    for row, col, text, ref in book.sheets[sheet].formulas:
        if ref is None and (row, col) == (r, c):
            return "=" + text
        if ref is not None and ref[0] <= r <= ref[2] and ref[1] <= c <= ref[3]:
            return "{=" + text + "}"
    return "(no formula)"


_INTERSECTION = re.compile(r"(?<![\w.'!$])([A-Za-z_][\w.]*) +(\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?)")


def formula_diagnosis(book: Book, text: str, sheet: str, r: int, c: int, why: str) -> str | None:
    """What is wrong with a learner's formula that gives an error value, where the text or the engine
    says it: ``!`` read as the intersection operator, a circular reference, an unknown name or
    function, or a reference outside the cells the book holds."""
    lower = {n.lower(): n for n in book.sheets}
    m = _INTERSECTION.search(text)
    if m and m.group(1).lower() in lower:
        tab = lower[m.group(1).lower()]
        first = m.group(2).split(":")[0]
        return (
            f"`!` read as the intersection operator (the file holds {m.group(0)!r}): in LibreOffice's default "
            f"syntax write `${a1.sheet_prefix(tab)[:-1]}.{first}`, or switch to Excel A1 syntax "
            "(Tools > Options > LibreOffice Calc > Formula)"
        )
    if "circular" in why or why in ("Err:522", "Err:523"):
        return "a circular reference: the formula reads its own cell, directly or through the stages after it"
    if why.startswith("unknown name"):
        return why + "; the book names each stage (embed.h, h.0.ln_1.var, ...): use one of those or a range"
    if why.startswith("unsupported function"):
        return why.split(";")[0] + ": write it with the functions Excel and LibreOffice both know"
    outside = _outside_data(book, text, sheet, r, c)
    if outside:
        return outside
    return None


def _outside_data(book: Book, text: str, sheet: str, r: int, c: int) -> str | None:
    """'it reads X, beyond the cells the book holds on that tab' for the first such reference."""
    try:
        ast = parse(text.lstrip("{=").rstrip("}"), r, c)
    except WorkbookError:
        return None
    for node in walk(ast):
        if type(node) is not Ref:
            continue
        tab = node.sheet or sheet
        sh = next((s for n, s in book.sheets.items() if n.lower() == tab.lower()), None)
        if sh is None:
            return f"it reads the tab {tab!r}, which the book does not have"
        r0 = node.r0 if node.r0_abs else r + node.r0
        r1 = node.r1 if node.r1_abs else r + node.r1
        c0 = node.c0 if node.c0_abs else c + node.c0
        c1 = node.c1 if node.c1_abs else c + node.c1
        R, C = sh.dims
        if max(r0, r1) == a1.MAX_ROWS - 1 or max(c0, c1) == a1.MAX_COLS - 1:
            continue  # a whole column or row
        if max(r0, r1) >= R or max(c0, c1) >= C or min(r0, r1, c0, c1) < 0:
            span = a1.span(min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1), (False, False), (False, False))
            return (
                f"it reads {a1.sheet_prefix(sh.name)}{span}, beyond the cells the book holds on that tab "
                f"(up to {cell_name(R - 1, C - 1)}); read the stage's cells the region's explanation names"
            )
    return None


def _where(region: Region, i: int, j: int) -> str:
    return f"'{region.tab}'!{cell_name(region.top + i, region.left + j)}"


def _explain(
    layout: Layout, values: Values, weights: dict, region: Region, stage, rtol: float, graph: dict, trace: dict
) -> dict:
    """A filled exercise that fails: check's first wrong cell, and a diagnosis from its own inputs; or,
    when it is right for what it reads, a pass that follows from an earlier mistake."""
    out = {"status": FAIL, "first_bad": stage.first_bad}
    right = _right_for_inputs(layout, values, weights, region.name, rtol, graph, trace)
    if right is None:
        return out
    if right.all():
        return {"status": PASS, "follows": []}
    inp = Inputs(layout, values, weights, region.name, graph)
    diagnosis = diagnose(inp, region, right, rtol, trace)
    if diagnosis:
        out["diagnosis"] = diagnosis
    return out


def _right_for_inputs(
    layout: Layout, values: Values, weights: dict, name: str, rtol: float, graph: dict, trace: dict
) -> np.ndarray | None:
    """Cells of stage ``name`` equal to its math on the values it reads in the book; None without math.
    (``agrees``: an error in an input must be passed on.)"""
    math_ = stage_math(name)
    if math_ is None:
        return None
    region = layout.region(name)
    inp = Inputs(layout, values, weights, name, graph)
    try:
        want = quietly(math_, inp)
    except (KeyError, ValueError, IndexError):
        return None
    if inp.incomplete:  # what an empty or error input gives depends on the function: no verdict
        return None
    return agrees(region, values, want, rtol, trace)


def _attribute(
    layout: Layout, values: Values, weights: dict, stages: list, graph, names: set, bad: list, trace: dict
) -> None:
    """A failing stage that is not an exercise, downstream of a wrong or unfinished exercise: 'follows from
    exercise X' when its values are its math on what it reads (or when there is no math for it here)."""
    if not bad:
        return
    for s in stages:
        if s.passed or s.stage in names:
            continue
        ups = [n for n in bad if n in exercises.upstream(graph, s.stage)]
        if not ups:
            continue
        right = _right_for_inputs(layout, values, weights, s.stage, 0.0, graph, trace)
        if right is not None and not right.all():
            continue  # wrong for its own inputs: its own failure
        s.note = "follows from exercise " + ", ".join(ups)
